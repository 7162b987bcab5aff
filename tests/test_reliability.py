"""Reliability and safety: messy readings, bad configuration, a failing database, hostile names, secrets,
and real measured data. Every case has a row in docs/reliability.md ("What happens when …").

Package-level tests where the behaviour belongs to the package; the real ``snakemake`` where it is about
the workflow (configuration errors, an unreachable or failing database, secrets, real data).
"""

from __future__ import annotations

import csv
import json
import math
import re
import sqlite3
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, make_sqlite, utc
from PIL import Image

from sensorcharts import fingerprints
from sensorcharts.charts import LineChart, Sensor, _series, render_day
from sensorcharts.database import QueryTimeout, Source, extract_day, readings_schema
from sensorcharts.settings import check_sensor_ranges
from sensorcharts.tables import Validity, aggregate, mark_validity
from sensorcharts.timegrid import DATE_RE, HOUR_STAMP_RE, day_bounds, query_bounds, zone
from test_workflow import minute_readings
from workflow_runner import Workdir

LA = zone("America/Los_Angeles")
DAY = date(2025, 1, 15)  # 2025-01-15T08:00Z .. 2025-01-16T08:00Z
START, END = day_bounds(DAY, LA)
SENSORS = ["temperature", "humidity"]
INF = float("inf")
# Temperature and humidity with the plausible ranges config/config.yaml suggests (pressure left out: fewer
# charts, faster runs).
CONFIG_SENSORS = {
    "temperature": {"display_name": "Temperature", "unit": "°C", "valid_min": -90, "valid_max": 60},
    "humidity": {"display_name": "Humidity", "unit": "%", "valid_min": 0, "valid_max": 100, "out_of_range": "drop"},
}
TEMPERATURE = Sensor("temperature", "Temperature", "°C", Validity(-90, 60))
LINE_RGB = (1, 115, 178)  # the first colour of the charts' palette (seaborn "colorblind")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# --- helpers ----------------------------------------------------------------------------------------------


def extract(db, tmp_path, sensors=SENSORS, bounds=(START, END), **source) -> pa.Table:
    out = tmp_path / "out" / "readings.parquet"
    rows = extract_day(Source(db.url, **source), sensors, *bounds, out)
    table = pq.read_table(out)
    assert table.num_rows == rows
    return table


def frame_of(rows, with_device=False) -> pd.DataFrame:
    """Rows ``(utc datetime, sensor, value[, device])`` as the extract's Parquet reads back into pandas."""
    schema = readings_schema(with_device)
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    return pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)],
                                schema=schema).to_pandas()


def pg_connect(db, autocommit=True):
    import psycopg2

    con = psycopg2.connect(db.url.replace("postgresql+psycopg2://", "postgresql://"))
    con.autocommit = autocommit
    return con


def pg_admin(db, sql: str, params=None) -> None:
    con = pg_connect(db)
    try:
        con.cursor().execute(sql, params)
    finally:
        con.close()


def wait_for_backend(db, condition: str, limit_s: float = 60.0) -> int:
    """The pid of a backend of ``db`` running a COPY that matches ``condition`` (polling pg_stat_activity)."""
    con = pg_connect(db)
    try:
        cur = con.cursor()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
                f"AND state = 'active' AND query LIKE 'COPY%%' AND {condition}"
            )
            found = cur.fetchall()
            if found:
                return found[0][0]
            time.sleep(0.02)
    finally:
        con.close()
    raise AssertionError("no COPY of the extract showed up in pg_stat_activity")


def terminate(db, pid: int) -> None:
    pg_admin(db, "SELECT pg_terminate_backend(%s)", (pid,))


def line_pixels(png: Path, x0: float, x1: float, rgb=LINE_RGB) -> int:
    """Pixels of the line colour inside the plot area between fractions ``x0`` and ``x1`` of the x axis."""
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB")).astype(int)
    height, width, _ = pixels.shape
    # The axes occupy (0.08, 0.15, 0.89, 0.74) of the figure (charts.LineChart).
    left, right = int(width * (0.08 + 0.89 * x0)), int(width * (0.08 + 0.89 * x1))
    top, bottom = int(height * (1 - 0.89)), int(height * (1 - 0.15))
    area = pixels[top:bottom, left:right]
    return int((np.abs(area - np.array(rgb)).max(axis=2) < 40).sum())


def no_files(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]


# --- bad readings -------------------------------------------------------------------------------------------


def test_nan_and_infinity_reach_the_extract_as_stored(readings_db, tmp_path):
    t = utc(2025, 1, 15, 12)
    readings_db.insert([
        (t, "temperature", float("nan"), "d"),
        (t + timedelta(minutes=1), "temperature", INF, "d"),
        (t + timedelta(minutes=2), "temperature", -INF, "d"),
        (t + timedelta(minutes=3), "temperature", None, "d"),
        (t + timedelta(minutes=4), "temperature", 1.5, "d"),
    ])
    values = extract(readings_db, tmp_path).column("value").to_pylist()
    if readings_db.kind == "postgresql":
        assert math.isnan(values[0])  # COPY writes NaN; only an empty field is NULL
    else:
        assert values[0] is None  # SQLite cannot store NaN: it stores NULL
    assert values[1:] == [INF, -INF, None, 1.5]


def test_sqlite_text_in_the_value_column_is_read_as_the_number_it_spells(sqlite_db, tmp_path):
    # What `sqlite3 .import` of a CSV into an untyped table leaves behind: text values, numeric device ids.
    sqlite_db.execute("CREATE TABLE loose_readings (recorded_at, sensor_type, value, device_id)")
    for minute, value, device in ((0, "NaN", "d"), (1, "-inf", "d"), (2, "n/a", "d"), (3, "12.5", 7)):
        sqlite_db.execute("INSERT INTO loose_readings VALUES (%s, %s, %s, %s)",
                          (f"2025-01-15 12:0{minute}:00", "temperature", value, device))
    table = extract(sqlite_db, tmp_path, table="loose_readings")
    values = table.column("value").to_pylist()
    assert math.isnan(values[0]) and values[1:] == [-INF, None, 12.5]
    assert table.column("device").to_pylist() == ["d", "d", "d", "7"]


def test_duplicates_out_of_order_rows_and_other_sensors(readings_db, tmp_path):
    t = utc(2025, 1, 15, 12)
    rows = [
        (t + timedelta(minutes=20), "temperature", 23.0, "d"),
        (t, "temperature", 20.0, "d"),
        (t, "temperature", 21.0, "d"),  # same time, another value: both are real rows
        (t + timedelta(minutes=10), "temperature", 22.0, "d"),
        (t + timedelta(minutes=10), "temperature", 22.0, "d"),  # exact duplicate: one row
        (t + timedelta(minutes=5), "wind", 3.0, "d"),  # not configured: ignored
    ]
    readings_db.insert(rows)
    table = extract(readings_db, tmp_path)
    assert [(r["recorded_at"], r["value"]) for r in table.to_pylist()] == [
        (t, 20.0), (t, 21.0), (t + timedelta(minutes=10), 22.0), (t + timedelta(minutes=20), 23.0)]
    hourly, daily = aggregate(table.to_pandas(), DAY, LA)
    (row,) = daily.to_pylist()
    assert (row["count"], row["mean"]) == (4, 21.5)
    # A row of a sensor that is not configured does not change the day's fingerprint either.
    source = Source(readings_db.url)
    before = fingerprints.compute(source, SENSORS, [DAY], LA)
    readings_db.insert([(t + timedelta(minutes=7), "wind", 4.0, "d")])
    assert fingerprints.compute(source, SENSORS, [DAY], LA) == before


def test_future_readings_wait_for_their_time(readings_db, tmp_path):
    now = utc(2025, 1, 15, 20, 0, 0, 500000)  # 12:00:00.5 PST on the 15th: "today"
    start, end = query_bounds(DAY, LA, now)
    assert (start, end) == (START, utc(2025, 1, 15, 20))  # today ends at now (whole seconds)
    assert query_bounds(date(2025, 1, 14), LA, now) == day_bounds(date(2025, 1, 14), LA)  # past days whole
    readings_db.insert([
        (utc(2025, 1, 15, 19), "temperature", 1.0, "d"),
        (utc(2025, 1, 15, 19, 59, 59), "temperature", 2.0, "d"),
        (utc(2025, 1, 15, 20, 1), "temperature", 3.0, "d"),  # a minute ahead of now
        (utc(2025, 1, 15, 23), "temperature", 4.0, "d"),  # later today
    ])
    assert extract(readings_db, tmp_path, bounds=(start, end)).column("value").to_pylist() == [1.0, 2.0]

    source = Source(readings_db.url)
    before = fingerprints.compute(source, SENSORS, [DAY], LA, now)
    assert before[DAY.isoformat()].startswith("rows=2 ")
    readings_db.insert([(utc(2025, 1, 15, 22), "temperature", 5.0, "d")])  # another future row: nothing to redo
    assert fingerprints.compute(source, SENSORS, [DAY], LA, now) == before
    readings_db.insert([(utc(2025, 1, 15, 19, 30), "temperature", 6.0, "d")])  # a late row of the past: redo
    assert fingerprints.compute(source, SENSORS, [DAY], LA, now) != before
    # Once its time has come, the future row counts.
    later = fingerprints.compute(source, SENSORS, [DAY], LA, utc(2025, 1, 15, 23, 30))
    assert later[DAY.isoformat()].startswith("rows=6 ")


def test_timestamp_without_time_zone_is_read_as_utc(postgres_db, tmp_path):
    from sqlalchemy.engine import make_url

    pg_admin(postgres_db, "CREATE TABLE naive_readings (recorded_at timestamp NOT NULL, sensor_type text, "
                          "value float8, device_id text)")
    # A server zone far from UTC: a comparison made in it would shift the local day by eight hours.
    pg_admin(postgres_db, f"ALTER DATABASE {make_url(postgres_db.url).database} SET timezone = 'Asia/Tokyo'")
    con = pg_connect(postgres_db)
    try:
        cur = con.cursor()
        cur.execute("SHOW timezone")
        assert cur.fetchone() == ("Asia/Tokyo",)  # what a session gets unless it sets its own zone
    finally:
        con.close()
    naive = [datetime(2025, 1, 15, 7, 59, 59), datetime(2025, 1, 15, 8), datetime(2025, 1, 16, 7, 59, 59),
             datetime(2025, 1, 16, 8)]
    for i, t in enumerate(naive):
        pg_admin(postgres_db, "INSERT INTO naive_readings VALUES (%s, 'temperature', %s, 'd')", (t, float(i)))
    table = extract(postgres_db, tmp_path, table="naive_readings")
    assert table.column("recorded_at").to_pylist() == [utc(2025, 1, 15, 8), utc(2025, 1, 16, 7, 59, 59)]
    found = fingerprints.survey(Source(postgres_db.url, table="naive_readings"), SENSORS, [DAY], LA)
    assert found.lines[DAY.isoformat()].startswith("rows=2 ")
    assert found.newest == {"temperature": utc(2025, 1, 16, 7, 59, 59)}  # UTC, not Tokyo's 07:59:59
    now = utc(2025, 1, 15, 8, 0, 1)  # today has lasted one second: one row
    fp = fingerprints.compute(Source(postgres_db.url, table="naive_readings"), SENSORS, [DAY], LA, now)
    assert fp[DAY.isoformat()].startswith("rows=1 ")


def test_a_sensor_name_is_a_bound_value_never_sql(readings_db, tmp_path):
    readings_db.insert([(utc(2025, 1, 15, 12), "temperature", 1.0, "d")])
    hostile = ["temperature') OR 1=1; DROP TABLE sensor_readings; --"]
    assert extract(readings_db, tmp_path, sensors=hostile).num_rows == 0
    assert fingerprints.compute(Source(readings_db.url), hostile, [DAY], LA)[DAY.isoformat()].startswith("rows=0 ")
    assert extract(readings_db, tmp_path).num_rows == 1  # the table is still there


# --- valid readings: tables and charts -------------------------------------------------------------------


def test_mark_validity():
    t = utc(2025, 1, 15, 12)
    values = [("temperature", 20.0), ("temperature", float("nan")), ("temperature", INF), ("temperature", -INF),
              ("temperature", -200.0), ("temperature", 70.0), ("temperature", None), ("temperature", 60.0),
              ("humidity", 50.0), ("humidity", 150.0), ("pressure", 0.0)]
    frame = frame_of([(t, s, v) for s, v in values])
    marked = mark_validity(frame, {"temperature": Validity(-90, 60), "humidity": Validity(0, 100, True)})
    assert marked["valid"].tolist() == [True, False, False, False, False, False, False, True, True, True, True]
    assert marked["out_of_range"].tolist() == [False, False, False, False, True, True, False, False, False, True,
                                               False]  # pressure has no range here


def test_the_ranges_config_yaml_suggests_are_valid_once_uncommented():
    import jsonschema

    text = (REPO / "config" / "config.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(re.sub(r"^(\s+)# (valid_min|valid_max|out_of_range):", r"\1\2:", text, flags=re.M))
    assert {k: (v["valid_min"], v["valid_max"]) for k, v in config["sensors"].items()} == {
        "temperature": (-90, 60), "humidity": (0, 100), "pressure": (800, 1100)}
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(config, schema)
    check_sensor_ranges(config["sensors"])
    assert yaml.safe_load(text)["sensors"]["pressure"] == {"display_name": "Pressure", "unit": "hPa"}  # opt-in


def test_tables_count_only_valid_readings():
    t = utc(2025, 1, 15, 17)  # 09:00 PST
    rows = [(t, "temperature", 20.0), (t + timedelta(minutes=10), "temperature", -200.0),
            (t + timedelta(minutes=20), "temperature", 22.0), (t + timedelta(minutes=30), "temperature", INF),
            (t + timedelta(minutes=40), "temperature", float("nan")), (t + timedelta(minutes=50), "temperature", None),
            (t + timedelta(minutes=55), "temperature", -INF)]
    hourly, daily = aggregate(frame_of(rows), DAY, LA, {"temperature": Validity(-90, 60)})
    for table in (hourly, daily):
        (row,) = table.to_pylist()
        assert (row["count"], row["mean"], row["min"], row["max"]) == (2, 21.0, 20.0, 22.0)
        assert (row["first_reading"], row["last_reading"]) == (t, t + timedelta(minutes=20))
    # Kept out-of-range values count; non-finite ones never do.
    hourly, _ = aggregate(frame_of(rows), DAY, LA, {"temperature": Validity(-90, 60, keep_out_of_range=True)})
    (row,) = hourly.to_pylist()
    assert (row["count"], row["min"], row["max"]) == (3, -200.0, 22.0)


def spiky_hour():
    """One reading a minute from 09:00 PST, around 20 °C, with a -200 placeholder and a 5000 spike."""
    t0 = utc(2025, 1, 15, 17)
    rows = [(t0 + timedelta(minutes=m), "temperature", 20.0 + math.sin(m / 9)) for m in range(60)]
    rows[30] = (rows[30][0], "temperature", -200.0)
    rows[40] = (rows[40][0], "temperature", 5000.0)
    return t0, rows


def test_a_dropped_spike_neither_stretches_the_axis_nor_joins_its_neighbours():
    t0, rows = spiky_hour()
    origin = int(t0.timestamp() * 1_000_000)
    chart = LineChart()
    ticks = [(0.0, "09:00"), (3600.0, "10:00")]
    marked = mark_validity(frame_of(rows), {"temperature": Validity(-90, 60)})
    series = _series(marked, "temperature", origin)
    assert chart.draw(series, (0.0, 3600.0), ticks, "t", "T", "title") == 58
    lo, hi = chart.ax.get_ylim()
    assert 18 < lo < 19.1 and 20.9 < hi < 22  # the axis fits the valid readings
    y = chart.lines[0].get_ydata()
    assert np.isnan(y[30]) and np.isnan(y[40])  # the line breaks where a reading was dropped
    # Kept, the same readings set the axis.
    marked = mark_validity(frame_of(rows), {"temperature": Validity(-90, 60, keep_out_of_range=True)})
    assert chart.draw(_series(marked, "temperature", origin), (0.0, 3600.0), ticks, "t", "T", "title") == 60
    lo, hi = chart.ax.get_ylim()
    assert lo < -200 and hi > 5000


def test_chart_metadata_counts_dropped_and_out_of_range_readings(tmp_path):
    _, rows = spiky_hour()
    rows += [(utc(2025, 1, 15, 18, 5), "temperature", None), (utc(2025, 1, 15, 18, 6), "temperature", INF)]
    daily = {"temperature": str(tmp_path / "daily.png")}
    hourly = {("temperature", "2025-01-15T09"): str(tmp_path / "h09.png"),
              ("temperature", "2025-01-15T10"): str(tmp_path / "h10.png")}
    metas = render_day(frame_of(rows), DAY, LA, [TEMPERATURE], daily, hourly)
    got = {m.stamp: (m.data_points, m.dropped_points, m.out_of_range_points) for m in metas}
    assert got == {"2025-01-15": (58, 4, 2), "2025-01-15T09": (58, 2, 2), "2025-01-15T10": (0, 2, 0)}
    with Image.open(daily["temperature"]) as im:
        assert (im.text["dropped_points"], im.text["out_of_range_points"]) == ("4", "2")
    keep = Sensor("temperature", "Temperature", "°C", Validity(-90, 60, keep_out_of_range=True))
    (meta,) = render_day(frame_of(rows), DAY, LA, [keep], daily, {})
    assert (meta.data_points, meta.dropped_points, meta.out_of_range_points) == (60, 2, 2)


def test_a_single_reading_in_an_hour_is_drawn_as_a_dot(tmp_path):
    rows = [(utc(2025, 1, 15, 17, 30), "temperature", 20.0),  # alone in 09:00-10:00 PST
            (utc(2025, 1, 15, 18, 9), "temperature", None),
            (utc(2025, 1, 15, 18, 10), "temperature", 21.0),  # 10:00: a valid reading between two invalid
            (utc(2025, 1, 15, 18, 11), "temperature", -200.0)]
    stamps = ["2025-01-15T09", "2025-01-15T10", "2025-01-15T11"]
    hourly = {("temperature", s): str(tmp_path / f"{s}.png") for s in stamps}
    metas = render_day(frame_of(rows), DAY, LA, [TEMPERATURE], {}, hourly)
    assert [m.data_points for m in metas] == [1, 1, 0]
    drawn = {s: line_pixels(tmp_path / f"{s}.png", 0.0, 1.0) for s in stamps}
    assert drawn["2025-01-15T09"] > 4 and drawn["2025-01-15T10"] > 4
    assert drawn["2025-01-15T11"] == 0
    table, _ = aggregate(frame_of(rows), DAY, LA, {"temperature": Validity(-90, 60)})
    assert [(r["hour"], r["count"], r["std"]) for r in table.to_pylist()] == [
        ("2025-01-15T09", 1, None), ("2025-01-15T10", 1, None)]


def test_a_day_of_invalid_readings_looks_like_a_day_without_readings(tmp_path):
    start, _ = day_bounds(DAY, LA)
    rows = [(start + timedelta(hours=h), "temperature", -200.0) for h in range(24)]
    hourly, daily = aggregate(frame_of(rows), DAY, LA, {"temperature": Validity(-90, 60)})
    assert hourly.num_rows == 0 and daily.num_rows == 0
    invalid = {"temperature": str(tmp_path / "invalid.png")}
    empty = {"temperature": str(tmp_path / "empty.png")}
    (meta,) = render_day(frame_of(rows), DAY, LA, [TEMPERATURE], invalid, {})
    (none,) = render_day(frame_of([]), DAY, LA, [TEMPERATURE], empty, {})
    assert (meta.data_points, meta.dropped_points, meta.out_of_range_points) == (0, 24, 24)
    assert (none.data_points, none.dropped_points, none.out_of_range_points) == (0, 0, 0)
    with Image.open(invalid["temperature"]) as a, Image.open(empty["temperature"]) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))  # both say "No data", axes 0..1


def test_a_day_without_readings(readings_db, tmp_path):
    readings_db.insert([(utc(2025, 1, 14, 12), "temperature", 1.0, "d"),
                        (utc(2025, 1, 16, 12), "temperature", 2.0, "d")])
    table = extract(readings_db, tmp_path)
    assert table.num_rows == 0 and table.schema == readings_schema(True)
    hourly, daily = aggregate(table.to_pandas(), DAY, LA, {"temperature": Validity(-90, 60)})
    assert hourly.num_rows == 0 and daily.num_rows == 0
    png = tmp_path / "daily.png"
    (meta,) = render_day(table.to_pandas(), DAY, LA, [TEMPERATURE], {"temperature": str(png)}, {})
    assert (meta.data_points, meta.dropped_points, meta.out_of_range_points) == (0, 0, 0)
    assert png.is_file() and line_pixels(png, 0.0, 1.0) == 0


# --- a failing database (package) ---------------------------------------------------------------------------


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "no" / "such.sqlite"
    with pytest.raises(ConnectionError, match="cannot connect to the database sqlite:///.*no such file"):
        extract_day(Source(f"sqlite:///{path}"), SENSORS, START, END, tmp_path / "out" / "r.parquet")
    assert not path.exists() and not (tmp_path / "out").exists()


def test_statement_timeout_cancels_a_blocked_postgres_query(postgres_db, tmp_path):
    postgres_db.insert([(utc(2025, 1, 15, 12), "temperature", 1.0, "d")])
    locker = pg_connect(postgres_db, autocommit=False)
    try:
        locker.cursor().execute("LOCK TABLE sensor_readings IN ACCESS EXCLUSIVE MODE")  # held until rollback
        with pytest.raises(QueryTimeout) as info:
            extract(postgres_db, tmp_path, statement_timeout=0.5)
        assert "database.statement_timeout_seconds (0.5 s)" in str(info.value)
        assert no_files(tmp_path / "out")
        with pytest.raises(QueryTimeout, match="database.statement_timeout_seconds"):
            fingerprints.compute(Source(postgres_db.url, statement_timeout=0.5), SENSORS, [DAY], LA)
    finally:
        locker.rollback()
        locker.close()
    assert extract(postgres_db, tmp_path, statement_timeout=0.5).num_rows == 1


def test_statement_timeout_bounds_a_locked_sqlite_database(sqlite_db, tmp_path):
    sqlite_db.insert([(utc(2025, 1, 15, 12), "temperature", 1.0, "d")])
    locker = sqlite3.connect(sqlite_db.path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(QueryTimeout, match=r"database.statement_timeout_seconds \(0.3 s\)"):
            extract(sqlite_db, tmp_path, statement_timeout=0.3)
        with pytest.raises(QueryTimeout, match="database.statement_timeout_seconds"):
            fingerprints.compute(Source(sqlite_db.url, statement_timeout=0.3), SENSORS, [DAY], LA)
        assert no_files(tmp_path / "out")
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_statement_timeout_interrupts_a_slow_sqlite_query(sqlite_db, tmp_path):
    sqlite_db.insert([(utc(2025, 1, 15, 12), "temperature", 1.0, "d")])
    # A view that counts to 10^9 before answering: minutes of work.
    sqlite_db.execute(
        "CREATE VIEW slow_readings AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < 1000000000) SELECT r.* FROM sensor_readings r WHERE (SELECT count(*) FROM n) > 0"
    )
    with pytest.raises(QueryTimeout, match="database.statement_timeout_seconds"):
        extract(sqlite_db, tmp_path, table="slow_readings", statement_timeout=0.3)
    with pytest.raises(QueryTimeout, match="database.statement_timeout_seconds"):
        fingerprints.compute(Source(sqlite_db.url, table="slow_readings", statement_timeout=0.3), SENSORS, [DAY], LA)
    assert no_files(tmp_path / "out")


def test_a_connection_lost_mid_extract_leaves_nothing_and_the_next_extract_completes(postgres_db, tmp_path):
    rows = minute_readings(DAY, DAY, LA)
    postgres_db.insert(rows)
    out = tmp_path / "out" / "readings.parquet"
    outcome: dict = {}

    def run():
        try:
            outcome["rows"] = extract_day(Source(postgres_db.url), SENSORS, START, END, out)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    locker = pg_connect(postgres_db, autocommit=False)
    try:
        locker.cursor().execute("LOCK TABLE sensor_readings IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=run)
        worker.start()
        terminate(postgres_db, wait_for_backend(postgres_db, "wait_event_type = 'Lock'"))
        worker.join(60)
    finally:
        locker.rollback()
        locker.close()
    error = outcome.get("error")
    assert isinstance(error, ConnectionError), outcome
    assert str(error).startswith("lost the connection to the database postgresql")
    assert no_files(out.parent)
    assert extract_day(Source(postgres_db.url), SENSORS, START, END, out) == len(rows)


# --- the workflow: configuration, hostile names ----------------------------------------------------------


SPEC = {"display_name": "X", "unit": ""}
DB_SECRET = "Pw-SECRET-5d21-db"
CONFIG_CASES = {
    "unknown key": (dict(colour="red"), ["unknown key 'colour'", "allowed are start, end"]),
    "unknown nested key": (dict(database={"passwrd": "x"}), ["unknown key 'passwrd' under database"]),
    "wrong type": (dict(cumulative_days="many"), ["cumulative_days must be an integer, got 'many'"]),
    "unknown timezone": (dict(timezone="Mars/Olympus_Mons"), ["timezone 'Mars/Olympus_Mons'", "IANA zone name"]),
    "start after end": (dict(start="2025-01-10", end="2025-01-01"), ["start (2025-01-10) is after end (2025-01-01)"]),
    "malformed date": (dict(start="15/01/2025"), ["start must be a date written YYYY-MM-DD, got '15/01/2025'"]),
    "impossible date": (dict(end="2025-02-30"), ["end '2025-02-30' is not a real calendar date"]),
    "empty sensor list": (dict(sensors={}), ["sensors must not be empty"]),
    "table not an identifier": (dict(database={"table": "readings; drop table readings"}),
                                ["database.table must be a plain SQL identifier", "'readings; drop table readings'"]),
    "column not an identifier": (dict(database={"columns": {"value": "value)--"}}),
                                 ["database.columns.value must be a plain SQL identifier"]),
    "sensor named like a path": (dict(sensors={"../../etc": SPEC}),
                                 ["'../../etc' is not allowed as a name under sensors", "lower-case identifier"]),
    "sensor named like SQL": (dict(sensors={"x; drop table": SPEC}),
                              ["'x; drop table' is not allowed as a name under sensors"]),
    "range upside down": (dict(sensors={"temperature": dict(SPEC, valid_min=60, valid_max=-90)}),
                          ["sensors.temperature.valid_min (60) is above sensors.temperature.valid_max (-90)"]),
    "unknown out_of_range": (dict(sensors={"temperature": dict(SPEC, out_of_range="clip")}),
                             ["sensors.temperature.out_of_range must be one of 'drop', 'keep', got 'clip'"]),
    "zero statement timeout": (dict(database={"statement_timeout_seconds": 0}),
                               ["database.statement_timeout_seconds must be more than 0"]),
    "nested key given a value": (dict(upload=250), ["upload must be a mapping, got 250",
                                                    "nested key is set as --config 'upload={requests_per_minute: …}'"]),
    "password in a bad config": (dict(database={"url": f"postgresql://u:{DB_SECRET}@db.example/x", "urll": 1}),
                                 ["unknown key 'urll' under database"]),
}
HOSTILE_TARGETS = [
    "results/images/x; drop table sensor_readings/daily/2025-01-15.png",
    "results/images/../../../etc/daily/2025-01-15.png",
    "results/readings/date=../../etc/data.parquet",
    "results/readings/date=2025-01-15'; drop table sensor_readings; --/data.parquet",
    "results/images/temperature/hourly/2025-01-15T25.png",
]


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """Every configuration case and hostile target through the real ``snakemake -n``, run concurrently."""
    root = tmp_path_factory.mktemp("dry-runs")
    db = make_sqlite(root / "readings.sqlite")
    db.insert(minute_readings(date(2025, 1, 15), date(2025, 1, 15), LA, sensors=("temperature",)))
    base = dict(start="2025-01-15", end="2025-01-15", now="2025-02-01T00:00:00+00:00", cumulative_days=1)
    runs = {}
    for i, (name, (overrides, _)) in enumerate(CONFIG_CASES.items()):
        runs[name] = (Workdir(root / f"config-{i}", db.url, **{**base, **overrides}), [])
    for i, target in enumerate(HOSTILE_TARGETS):
        runs[target] = (Workdir(root / f"target-{i}", db.url, **base), [target])
    started = {name: wd.start("-n", *targets, wrapper=False) for name, (wd, targets) in runs.items()}
    results = {}
    for name, proc in started.items():
        output, _ = proc.communicate(timeout=300)
        results[name] = (runs[name][0], proc.returncode, output)
    yield results, db


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_configuration_stops_before_any_work_with_one_sentence(dry_runs, case):
    results, _ = dry_runs
    wd, returncode, output = results[case]
    assert returncode != 0
    messages = [line for line in output.splitlines() if line.startswith("Invalid configuration:")]
    assert len(messages) == 1, output[-3000:]
    for words in CONFIG_CASES[case][1]:
        assert words in messages[0]
    assert "Traceback" not in output and "ValidationError" not in output  # not Snakemake's schema dump
    assert DB_SECRET not in output
    assert not (wd.path / "results").exists()


def test_nested_values_on_the_command_line_are_read_as_the_schema_says(sqlite_db, tmp_path):
    """Snakemake hands ``--config upload='{threads: 8}'`` over as the text '8'; the workflow reads it as 8."""
    day = date(2025, 1, 15)
    sqlite_db.insert(minute_readings(day, day, zone("America/Los_Angeles"), sensors=("temperature",)))
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-01-15", end="2025-01-15",
                 now="2025-02-01T00:00:00+00:00", cumulative_days=1)
    wd.snakemake("--cores", "1", "results/tables/daily/date=2025-01-15/data.parquet",
                 "--config", "upload={requests_per_minute: 250, threads: 8}",
                 "sensors={temperature: {valid_max: 0, valid_min: null}}")
    daily = pq.read_table(wd.path / "results/tables/daily/date=2025-01-15/data.parquet").to_pylist()
    (temperature,) = [row for row in daily if row["sensor"] == "temperature"]
    assert temperature["max"] <= 0 < temperature["count"] < 1440  # readings above valid_max were not counted


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_hostile_target_paths_match_no_rule(dry_runs, target):
    results, db = dry_runs
    wd, returncode, output = results[target]
    assert returncode != 0
    assert "MissingRuleException" in output or "No rule to produce" in output
    assert not (wd.path / "results").exists()
    assert not (wd.path.parent / "etc").exists()
    with sqlite3.connect(db.path) as con:  # the readings are intact
        assert con.execute("SELECT count(*) FROM sensor_readings").fetchone()[0] == 24 * 60
    con.close()


@pytest.mark.parametrize("text", ["../../etc", "2025-01-15/../x", "2025-01-15; drop", "x; drop table", ""])
def test_wildcard_patterns_refuse_hostile_text(text):
    assert re.fullmatch(DATE_RE, text) is None
    assert re.fullmatch(HOUR_STAMP_RE, text) is None


# --- the workflow: a failing database -----------------------------------------------------------------------


def test_an_unreachable_database_stops_the_run_in_one_line_with_nothing_written(tmp_path):
    url = f"postgresql+psycopg2://reader:{DB_SECRET}@127.0.0.1:1/readings"
    wd = Workdir(tmp_path / "wd", url, start="2025-01-14", end="2025-01-15", now="2025-02-01T00:00:00+00:00")
    run = wd.snakemake("--cores", "1", check=False)
    assert run.returncode != 0
    lines = [line for line in run.output.splitlines() if "127.0.0.1:1" in line]
    assert len(lines) == 1, run.output[-3000:]
    assert lines[0].startswith("sensor-charts: stopped before any job, nothing written: cannot connect to the "
                               "database postgresql+psycopg2://reader:***@127.0.0.1:1/readings")
    assert DB_SECRET not in run.output and "Traceback" not in run.output
    assert not (wd.path / "results").exists()


def test_a_missing_table_stops_the_run_naming_the_key(sqlite_db, tmp_path):
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-01-15", end="2025-01-15",
                 now="2025-02-01T00:00:00+00:00", database={"table": "readings"})
    run = wd.snakemake("-n", check=False)
    assert run.returncode != 0
    (line,) = [line for line in run.output.splitlines() if line.startswith("sensor-charts:")]
    assert "the database has no table 'readings'; set database.table" in line
    assert "Traceback" not in run.output
    assert not (wd.path / "results").exists()


def test_a_slow_database_fails_the_run_naming_the_timeout(postgres_db, tmp_path):
    locker = pg_connect(postgres_db, autocommit=False)
    try:
        locker.cursor().execute("LOCK TABLE sensor_readings IN ACCESS EXCLUSIVE MODE")
        wd = Workdir(tmp_path / "wd", postgres_db.url, start="2025-01-15", end="2025-01-15",
                     now="2025-02-01T00:00:00+00:00", database={"statement_timeout_seconds": 0.5})
        run = wd.snakemake("-n", check=False)
    finally:
        locker.rollback()
        locker.close()
    assert run.returncode != 0
    (line,) = [line for line in run.output.splitlines() if line.startswith("sensor-charts:")]
    assert "took longer than database.statement_timeout_seconds (0.5 s) and was cancelled" in line
    assert not (wd.path / "results").exists()


def test_a_connection_lost_during_an_extract_job_then_the_next_run_completes(postgres_db, tmp_path):
    rows = minute_readings(DAY, DAY, LA)
    postgres_db.insert(rows)
    # The extract reads through a view that stalls COPY statements only (the fingerprint query at DAG time
    # passes), so the job is reliably in the middle of its COPY when the backend is terminated.
    pg_admin(postgres_db, "CREATE FUNCTION copy_gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$ BEGIN "
                          "IF current_query() LIKE 'COPY%%' THEN PERFORM pg_sleep(120); END IF; RETURN true; END $$")
    pg_admin(postgres_db, "CREATE VIEW gated_readings AS SELECT * FROM sensor_readings WHERE copy_gate()")
    target = "results/readings/date=2025-01-15/data.parquet"
    wd = Workdir(tmp_path / "wd", postgres_db.url, start="2025-01-15", end="2025-01-15", cumulative_days=1,
                 now="2025-02-01T00:00:00+00:00", database={"table": "gated_readings"}, sensors=CONFIG_SENSORS)
    proc = wd.start("--cores", "1", target, wrapper=False)
    try:
        terminate(postgres_db, wait_for_backend(postgres_db, "true"))
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "extract_day: lost the connection to the database postgresql" in output
    assert not (wd.path / target).exists()
    assert not [p for p in (wd.path / "results").rglob("*") if p.is_file() and "fingerprints" not in p.parts]

    pg_admin(postgres_db, "CREATE OR REPLACE FUNCTION copy_gate() RETURNS boolean LANGUAGE sql AS 'SELECT true'")
    wd.snakemake("--cores", "1", target)
    assert pq.read_table(wd.path / target).num_rows == len(rows)


# --- the workflow: secrets ------------------------------------------------------------------------------------


def test_the_database_password_never_reaches_a_file_or_the_output(postgres_db, tmp_path, request):
    from sqlalchemy.engine import make_url

    role = f"reader_{uuid.uuid4().hex[:8]}"
    name = make_url(postgres_db.url).database
    pg_admin(postgres_db, f"CREATE ROLE {role} LOGIN PASSWORD '{DB_SECRET}'")
    pg_admin(postgres_db, f"GRANT SELECT ON sensor_readings TO {role}")  # read-only is all the workflow needs

    def drop_role():
        pg_admin(postgres_db, f"DROP OWNED BY {role}")
        pg_admin(postgres_db, f"DROP ROLE {role}")

    request.addfinalizer(drop_role)
    url = make_url(postgres_db.url).set(username=role, password=DB_SECRET).render_as_string(hide_password=False)
    assert DB_SECRET in url and name in url
    postgres_db.insert(minute_readings(DAY, DAY, LA, sensors=("temperature",)))
    wd = Workdir(tmp_path / "wd", url, start="2025-01-15", end="2025-01-15", cumulative_days=1,
                 now="2025-02-01T00:00:00+00:00", sensors={"temperature": CONFIG_SENSORS["temperature"]})
    outputs = [wd.snakemake("--cores", "2", "--printshellcmds", "--verbose").output]
    assert len(wd.files("results/images/temperature/*/*.png")) == 26
    # A run whose queries are refused reports the masked URL, never the password.
    pg_admin(postgres_db, f"REVOKE SELECT ON sensor_readings FROM {role}")
    failed = wd.snakemake("--cores", "1", check=False)
    assert failed.returncode != 0 and f"{role}:***@" in failed.output
    outputs.append(failed.output)

    written = [p for p in wd.path.rglob("*") if p.is_file()]
    assert len(written) > 26
    for output in outputs:
        assert DB_SECRET not in output
    assert not [p for p in written if DB_SECRET.encode() in p.read_bytes()]


# --- real measured data ------------------------------------------------------------------------------------


UTC_PLUS_1 = timezone(timedelta(hours=1))


def occupancy_rows():
    """The UCI occupancy slice: naive local times in UTC+1, converted to UTC as a loader must."""
    rows = []
    with open(FIXTURES / "uci-occupancy-2015-02-03_04.csv", newline="") as f:
        for r in csv.DictReader(f):
            t = datetime.fromisoformat(r["date"]).replace(tzinfo=UTC_PLUS_1).astimezone(timezone.utc)
            rows += [(t, "temperature", float(r["Temperature"]), "uci-occupancy"),
                     (t, "humidity", float(r["Humidity"]), "uci-occupancy")]
    return rows


def air_quality_rows():
    """The UCI air-quality slice (-200 marks a missing value; stored as it is, a faithful copy)."""
    rows = []
    with open(FIXTURES / "uci-air-quality-2005-01-02_03.csv", newline="") as f:
        for r in csv.DictReader(f):
            local = datetime.strptime(f"{r['Date']} {r['Time']}", "%d/%m/%Y %H:%M:%S").replace(tzinfo=UTC_PLUS_1)
            t = local.astimezone(timezone.utc)
            rows += [(t, "temperature", float(r["T"]), "uci-air-quality"),
                     (t, "humidity", float(r["RH"]), "uci-air-quality")]
    return rows


def local_hourly_means(path: Path, time_of, column: str) -> dict[str, tuple[int, float]]:
    """``{YYYY-MM-DDTHH: (count, mean)}`` straight from a fixture file's local wall-clock times."""
    groups: dict[str, list[float]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            value = float(r[column])
            if value != -200:
                groups.setdefault(time_of(r).strftime("%Y-%m-%dT%H"), []).append(value)
    return {hour: (len(v), math.fsum(v) / len(v)) for hour, v in groups.items()}


REAL_DAYS = ["2005-01-02", "2005-01-03", "2015-02-04"]


def test_real_data_fixture_is_small_and_cited():
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 200_000
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    assert "Candanedo" in readme and "De Vito" in readme and "CC BY 4.0" in readme


def test_real_data_through_the_workflow(readings_db, tmp_path):
    readings_db.insert(occupancy_rows() + air_quality_rows())
    wd = Workdir(tmp_path / "wd", readings_db.url, start="2015-02-04", end="2015-02-04", cumulative_days=1,
                 timezone="Etc/GMT-1", now="2025-06-01T00:00:00+00:00", sensors=CONFIG_SENSORS)
    targets = [f"results/metadata/day/{d}.json" for d in REAL_DAYS]
    targets += [f"results/tables/daily/date={d}/data.parquet" for d in REAL_DAYS]
    wd.snakemake("--cores", "2", *targets)
    meta = {(m["sensor_type"], m["interval"], m["stamp"]): m for d in REAL_DAYS
            for m in json.loads((wd.path / f"results/metadata/day/{d}.json").read_text())}

    def hourly(day):
        return pd.read_parquet(wd.path / f"results/tables/hourly/date={day}/data.parquet")

    def daily(day):
        return pd.read_parquet(wd.path / f"results/tables/daily/date={day}/data.parquet")

    # Occupancy, 2015-02-04: hourly means equal the ones computed straight from the file's local hours.
    occupancy = FIXTURES / "uci-occupancy-2015-02-03_04.csv"
    table = hourly("2015-02-04")
    for sensor, column in (("temperature", "Temperature"), ("humidity", "Humidity")):
        want = {h: cm for h, cm in local_hourly_means(occupancy, lambda r: datetime.fromisoformat(r["date"]),
                                                      column).items() if h.startswith("2015-02-04")}
        got = table[table["sensor"] == sensor].set_index("hour")
        assert set(got.index) == set(want)
        for hour, (count, mean) in want.items():
            assert got.loc[hour, "count"] == count
            assert got.loc[hour, "mean"] == pytest.approx(mean, rel=1e-12)
    assert {f"2015-02-04T{h:02d}" for h in range(11, 17)}.isdisjoint(table["hour"])  # the 7-hour gap
    assert got.loc["2015-02-04T09", "local_start"] == "2015-02-04T09:00:00+01:00"
    day = meta[("temperature", "daily", "2015-02-04")]
    assert (day["data_points"], day["dropped_points"], day["start_time"]) == (1013, 0, "2015-02-04T00:00:00+01:00")
    assert meta[("temperature", "hourly", "2015-02-04T12")]["data_points"] == 0
    # No line across the gap (10:43 to 17:51 local), a line before it.
    png = wd.path / "results/images/temperature/daily/2015-02-04.png"
    assert line_pixels(png, 11.2 / 24, 17.5 / 24) == 0
    assert line_pixels(png, 6 / 24, 10 / 24) > 100

    # Air quality, 2005-01-02: the three -200 hours are dropped, counted, and stay in the extract.
    readings = pq.read_table(wd.path / "results/readings/date=2005-01-02/data.parquet").to_pandas()
    assert len(readings) == 48 and (readings["value"] == -200).sum() == 6
    for sensor, column in (("temperature", "T"), ("humidity", "RH")):
        m = meta[(sensor, "daily", "2005-01-02")]
        assert (m["data_points"], m["dropped_points"], m["out_of_range_points"]) == (21, 3, 3)
        assert meta[(sensor, "hourly", "2005-01-02T22")]["dropped_points"] == 1
        row = daily("2005-01-02").set_index("sensor").loc[sensor]
        values = [float(r[column]) for r in csv.DictReader(open(FIXTURES / "uci-air-quality-2005-01-02_03.csv"))
                  if r["Date"] == "2/01/2005" and float(r[column]) != -200]
        assert (row["count"], row["min"], row["max"]) == (21, min(values), max(values))
        assert row["mean"] == pytest.approx(math.fsum(values) / 21, rel=1e-12)
    air = local_hourly_means(FIXTURES / "uci-air-quality-2005-01-02_03.csv",
                             lambda r: datetime.strptime(f"{r['Date']} {r['Time']}", "%d/%m/%Y %H:%M:%S"), "T")
    temps = hourly("2005-01-02").query("sensor == 'temperature'").set_index("hour")
    assert set(temps.index) == set(air) and len(air) == 21
    for hour, (count, mean) in air.items():
        assert (temps.loc[hour, "count"], temps.loc[hour, "mean"]) == (count, pytest.approx(mean, rel=1e-12))
    # 2005-01-03: every reading is -200: empty tables, "No data" charts, 24 dropped readings per sensor.
    for sensor in CONFIG_SENSORS:
        m = meta[(sensor, "daily", "2005-01-03")]
        assert (m["data_points"], m["dropped_points"], m["out_of_range_points"]) == (0, 24, 24)
    assert hourly("2005-01-03").empty and daily("2005-01-03").empty
    assert line_pixels(wd.path / "results/images/temperature/daily/2005-01-03.png", 0.0, 1.0) == 0
    assert line_pixels(wd.path / "results/images/temperature/daily/2005-01-02.png", 0.0, 1.0) > 100
    assert "Nothing to be done" in wd.snakemake("-n", *targets).output
