"""Extraction of one local day from SQLite and a real PostgreSQL, and the checks guarding it."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import utc

from sensorcharts.database import Source, check_identifier, extract_day, mask_url, readings_schema
from sensorcharts.timegrid import day_bounds, zone

LA = zone("America/Los_Angeles")
DAY = date(2025, 1, 15)  # 2025-01-15T08:00Z .. 2025-01-16T08:00Z
START, END = day_bounds(DAY, LA)
SENSORS = ["temperature", "humidity"]


def extract(db, tmp_path, sensors=SENSORS, day=DAY, tz=LA, **source):
    out = tmp_path / "out" / "readings.parquet"
    rows = extract_day(Source(db.url, **source), sensors, *day_bounds(day, tz), out)
    table = pq.read_table(out)
    assert table.num_rows == rows
    return table


def records(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


# --- identifiers and URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x; drop table", "../../etc", "1abc", "", "a-b", "sensor readings", "a" * 64, None])
def test_check_identifier_rejects(name):
    with pytest.raises(ValueError, match="database.table"):
        check_identifier(name, "database.table")


@pytest.mark.parametrize("name", ["sensor_readings", "_x", "A1", "a" * 63])
def test_check_identifier_accepts(name):
    assert check_identifier(name, "database.table") == name


@pytest.mark.parametrize(
    ("field", "key"),
    [
        ("table", "database.table"),
        ("time_column", "database.columns.time"),
        ("sensor_column", "database.columns.sensor"),
        ("value_column", "database.columns.value"),
        ("device_column", "database.columns.device"),
    ],
)
def test_source_rejects_bad_names(field, key):
    with pytest.raises(ValueError, match=key):
        Source("sqlite:///x.sqlite", **{field: "x; drop table readings"})


def test_source_from_config_defaults_and_no_device():
    source = Source.from_config("sqlite:///x.sqlite", {"columns": {"device": None}})
    assert (source.table, source.time_column, source.device_column) == ("sensor_readings", "recorded_at", None)
    with pytest.raises(ValueError, match="database.table"):
        Source.from_config("sqlite:///x.sqlite", {"table": "t;--"})


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://u:secret@h/db", "secret"),
        ("postgresql+psycopg2://user:hunter2@db.example.org:5432/readings?sslmode=require", "hunter2"),
        ("postgresql://u:p@ss@h/db", "p@ss"),  # an unescaped @ in the password
    ],
)
def test_mask_url_hides_password(url, password):
    masked = mask_url(url)
    assert "***" in masked
    assert password not in masked
    assert masked.startswith(url.split("://")[0] + "://")


@pytest.mark.parametrize("url", ["sqlite:///data/readings.sqlite", "postgresql://u@h/db", "postgresql://h/db"])
def test_mask_url_leaves_urls_without_password(url):
    assert mask_url(url) == url


# --- extract_day ------------------------------------------------------------------------------------------


def test_keeps_readings_inside_the_local_day_bounds(readings_db, tmp_path):
    readings_db.insert(
        [
            (utc(2025, 1, 15, 7, 59, 59, 999999), "temperature", 1.0, "d"),  # just before local midnight
            (utc(2025, 1, 15, 8, 0, 0), "temperature", 2.0, "d"),  # local midnight: inclusive
            (utc(2025, 1, 15, 20, 0, 0), "temperature", 3.0, "d"),
            (utc(2025, 1, 16, 7, 59, 59, 999999), "temperature", 4.0, "d"),  # last instant of the day
            (utc(2025, 1, 16, 8, 0, 0), "temperature", 5.0, "d"),  # next local midnight: exclusive
        ]
    )
    table = extract(readings_db, tmp_path)
    assert table.column("value").to_pylist() == [2.0, 3.0, 4.0]
    assert table.column("recorded_at").to_pylist() == [
        utc(2025, 1, 15, 8),
        utc(2025, 1, 15, 20),
        utc(2025, 1, 16, 7, 59, 59, 999999),
    ]


def test_dst_day_bounds(readings_db, tmp_path):
    readings_db.insert(
        [
            (utc(2025, 11, 2, 6, 59), "temperature", 1.0, None),  # 23:59 PDT the day before
            (utc(2025, 11, 2, 7, 0), "temperature", 2.0, None),  # 00:00 PDT
            (utc(2025, 11, 3, 7, 59), "temperature", 3.0, None),  # 23:59 PST (the day is 25 hours)
            (utc(2025, 11, 3, 8, 0), "temperature", 4.0, None),
        ]
    )
    table = extract(readings_db, tmp_path, day=date(2025, 11, 2))
    assert table.column("value").to_pylist() == [2.0, 3.0]


def test_drops_exact_duplicates_only(readings_db, tmp_path):
    t = utc(2025, 1, 15, 12)
    readings_db.insert(
        [
            (t, "temperature", 1.5, "d1"),
            (t, "temperature", 1.5, "d1"),  # exact duplicate
            (t, "temperature", 1.5, "d2"),  # other device
            (t, "temperature", 2.5, "d1"),  # other value
            (t, "humidity", 1.5, "d1"),  # other sensor
        ]
    )
    table = extract(readings_db, tmp_path)
    assert sorted(records(table)) == sorted(
        [
            (t, "temperature", 1.5, "d1"),
            (t, "temperature", 1.5, "d2"),
            (t, "temperature", 2.5, "d1"),
            (t, "humidity", 1.5, "d1"),
        ]
    )


def test_output_is_sorted_by_time(readings_db, tmp_path):
    times = [utc(2025, 1, 15, h, m) for h in (21, 9, 15, 8, 23) for m in (45, 5)]
    readings_db.insert([(t, "temperature" if i % 2 else "humidity", float(i), "d") for i, t in enumerate(times)])
    table = extract(readings_db, tmp_path)
    got = table.column("recorded_at").to_pylist()
    assert got == sorted(times)


def test_schema_and_values(readings_db, tmp_path):
    readings_db.insert(
        [
            (utc(2025, 1, 15, 9), "temperature", 0.1 + 0.2, "station-1"),
            (utc(2025, 1, 15, 10), "temperature", 1e-300, 'a,"b"'),  # CSV-hostile device name
            (utc(2025, 1, 15, 11), "temperature", None, None),  # NULL value and device kept as null
            (utc(2025, 1, 15, 12), "temperature", -273.15, ""),  # empty device is not NULL
        ]
    )
    table = extract(readings_db, tmp_path)
    assert table.schema == readings_schema(True)
    assert table.schema.field("recorded_at").type == pa.timestamp("us", tz="UTC")
    assert records(table) == [
        (utc(2025, 1, 15, 9), "temperature", 0.1 + 0.2, "station-1"),
        (utc(2025, 1, 15, 10), "temperature", 1e-300, 'a,"b"'),
        (utc(2025, 1, 15, 11), "temperature", None, None),
        (utc(2025, 1, 15, 12), "temperature", -273.15, ""),
    ]


def test_ignores_sensors_not_requested(readings_db, tmp_path):
    t = utc(2025, 1, 15, 12)
    readings_db.insert(
        [(t, "temperature", 1.0, "d"), (t, "pressure", 1013.0, "d"), (t, "humidity", 50.0, "d"), (t, "co2", 400.0, "d")]
    )
    table = extract(readings_db, tmp_path, sensors=["temperature", "pressure"])
    assert sorted(table.column("sensor").to_pylist()) == ["pressure", "temperature"]
    table = extract(readings_db, tmp_path, sensors=["temperature"])
    assert table.column("sensor").to_pylist() == ["temperature"]


def test_preserves_microseconds(readings_db, tmp_path):
    times = [utc(2025, 1, 15, 12, 0, 0, 1), utc(2025, 1, 15, 12, 0, 0, 123456), utc(2025, 1, 15, 12, 0, 0, 999999)]
    readings_db.insert([(t, "temperature", float(i), "d") for i, t in enumerate(times)])
    table = extract(readings_db, tmp_path)
    assert table.column("recorded_at").to_pylist() == times


def test_empty_day_gives_an_empty_file_with_the_schema(readings_db, tmp_path):
    readings_db.insert([(utc(2025, 1, 20, 12), "temperature", 1.0, "d")])
    table = extract(readings_db, tmp_path)
    assert table.num_rows == 0
    assert table.schema == readings_schema(True)


def test_table_without_device_column(readings_db, tmp_path):
    time_type = "TEXT" if readings_db.kind == "sqlite" else "timestamptz"
    readings_db.execute(f"CREATE TABLE plain_readings (recorded_at {time_type} NOT NULL, sensor_type TEXT, value REAL)")
    stamp = "2025-01-15 12:30:00.25" if readings_db.kind == "sqlite" else utc(2025, 1, 15, 12, 30, 0, 250000)
    readings_db.execute("INSERT INTO plain_readings VALUES (%s, %s, %s)", (stamp, "temperature", 7.5))
    table = extract(readings_db, tmp_path, table="plain_readings")
    assert "device" not in table.column_names
    assert table.schema == readings_schema(False)
    assert records(table) == [(utc(2025, 1, 15, 12, 30, 0, 250000), "temperature", 7.5)]


def test_device_column_none_ignores_devices(readings_db, tmp_path):
    readings_db.insert([(utc(2025, 1, 15, 12), "temperature", 1.0, "d1")])
    table = extract(readings_db, tmp_path, device_column=None)
    assert table.column_names == ["recorded_at", "sensor", "value"]


def test_renamed_columns(readings_db, tmp_path):
    time_type = "TEXT" if readings_db.kind == "sqlite" else "timestamptz"
    readings_db.execute(f"CREATE TABLE obs (ts {time_type} NOT NULL, kind TEXT, reading REAL, station TEXT)")
    stamp = "2025-01-15 12:00:00" if readings_db.kind == "sqlite" else utc(2025, 1, 15, 12)
    readings_db.execute("INSERT INTO obs VALUES (%s, %s, %s, %s)", (stamp, "humidity", 40.0, "s1"))
    table = extract(
        readings_db, tmp_path, table="obs", time_column="ts", sensor_column="kind", value_column="reading",
        device_column="station",
    )
    assert records(table) == [(utc(2025, 1, 15, 12), "humidity", 40.0, "s1")]


def test_missing_table_is_a_lookup_error_naming_it(readings_db, tmp_path):
    with pytest.raises(LookupError, match="no_such_table"):
        extract(readings_db, tmp_path, table="no_such_table")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_column_is_a_lookup_error_naming_column_and_key(readings_db, tmp_path):
    with pytest.raises(LookupError) as info:
        extract(readings_db, tmp_path, value_column="reading")
    assert "reading" in str(info.value) and "database.columns.value" in str(info.value)


def test_unreachable_database_is_a_connection_error_without_password(tmp_path):
    url = "postgresql+psycopg2://u:hunter2@127.0.0.1:1/db"
    out = tmp_path / "out.parquet"
    with pytest.raises(ConnectionError) as info:
        extract_day(Source(url), SENSORS, START, END, out)
    message = str(info.value)
    assert "hunter2" not in message
    assert "***" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # the driver's error is not chained
    assert not out.exists()


def test_leaves_no_temporary_file_next_to_the_output(readings_db, tmp_path):
    readings_db.insert([(utc(2025, 1, 15, 12), "temperature", 1.0, "d")])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "neighbour.txt").write_text("x")
    extract(readings_db, tmp_path)
    extract(readings_db, tmp_path)  # overwriting an existing file works too
    assert sorted(p.name for p in out_dir.iterdir()) == ["neighbour.txt", "readings.parquet"]


def test_postgres_query_failure_surfaces_the_database_error(postgres_db, tmp_path):
    # A text time column cannot be compared with the timestamptz bounds: COPY fails before sending a row,
    # and that failure (not an empty-stream error from the CSV reader) must reach the caller.
    postgres_db.execute("CREATE TABLE text_times (recorded_at text, sensor_type text, value float8)")
    postgres_db.execute("INSERT INTO text_times VALUES ('2025-01-15 12:00:00', 'temperature', 1.0)")
    out = tmp_path / "out" / "readings.parquet"
    with pytest.raises(Exception, match="operator does not exist") as info:
        extract_day(Source(postgres_db.url, table="text_times"), SENSORS, START, END, out)
    assert "Empty CSV" not in str(info.value)
    assert list(out.parent.iterdir()) == []


def test_the_modules_the_workflow_imports_to_build_its_dag_load_no_data_library():
    """Snakemake imports these at every start-up (cron included); pyarrow, pandas, SQLAlchemy and the
    drivers cost most of a second there and are imported only by jobs and when a connection is made."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "import sensorcharts.connection, sensorcharts.fingerprints, sensorcharts.settings, sensorcharts.codedigest;"
            "print(sorted({'pyarrow', 'pandas', 'numpy', 'sqlalchemy', 'psycopg2'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "workflow" / "scripts")], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"
