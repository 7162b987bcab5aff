"""Hourly and daily statistics, checked against a plain-Python computation, and the hive-partitioned layout."""

from __future__ import annotations

import math
import statistics
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import utc

from sensorcharts.atomic import write_parquet
from sensorcharts.database import readings_schema
from sensorcharts.tables import aggregate, daily_schema, hourly_schema, read_readings
from sensorcharts.timegrid import day_bounds, hour_slots, iso_local, zone

LA = zone("America/Los_Angeles")
ORDINARY = date(2025, 1, 15)
SPRING = date(2025, 3, 9)
FALL = date(2025, 11, 2)


# --- building readings ------------------------------------------------------------------------------------


def readings_frame(rows: list[tuple], with_device: bool = False) -> pd.DataFrame:
    """Rows ``(utc datetime, sensor, value[, device])`` as the extract's Parquet reads back into pandas."""
    schema = readings_schema(with_device)
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)], schema=schema)
    return table.to_pandas()


def synthetic_rows(day, tz, sensors, devices=(None,), seed=0, skip_stamps=(), nan_share=0.1):
    """Random readings inside every hour slot of ``day`` (except ``skip_stamps``), some without a value.

    Each slot also gets a reading (with a value) exactly at its start and one a microsecond before its end.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for slot in hour_slots(day, tz):
        if slot.stamp in skip_stamps:
            continue
        span_us = int((slot.end - slot.start) / timedelta(microseconds=1))
        for sensor in sensors:
            for device in devices:
                offsets = [0, span_us - 1] + sorted(int(o) for o in rng.integers(1, span_us - 1, rng.integers(1, 12)))
                for off in offsets:
                    missing = off != 0 and rng.random() < nan_share  # the reading at the start always has a value
                    value = None if missing else float(np.round(rng.normal(20, 5), 3))
                    t = slot.start + timedelta(microseconds=off)
                    rows.append((t, sensor, value) if device is None else (t, sensor, value, device))
    return rows


# --- the independent computation --------------------------------------------------------------------------


def _stats(group: list[tuple]) -> dict:
    values = [v for _, v in group]
    times = [t for t, _ in group]
    return {
        "count": len(values),
        "mean": math.fsum(values) / len(values),
        "min": min(values),
        "max": max(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "first_reading": min(times),
        "last_reading": max(times),
    }


def expected_tables(rows, day, tz, with_device=False):
    """``({key + (stamp,): stats}, {key: stats})`` computed with loops over the UTC hour bounds."""
    valid = [r for r in rows if r[2] is not None and not math.isnan(r[2])]
    keys = sorted({(r[1], r[3]) if with_device else (r[1],) for r in valid}, key=str)
    hourly, daily = {}, {}
    start, end = day_bounds(day, tz)
    for key in keys:
        mine = [r for r in valid if ((r[1], r[3]) if with_device else (r[1],)) == key]
        for slot in hour_slots(day, tz):
            inside = [(r[0], r[2]) for r in mine if slot.start <= r[0] < slot.end]
            if inside:
                hourly[key + (slot.stamp,)] = _stats(inside)
        inside = [(r[0], r[2]) for r in mine if start <= r[0] < end]
        if inside:
            daily[key] = _stats(inside)
    return hourly, daily


def assert_stats(actual: dict, expected: dict):
    assert actual["count"] == expected["count"]
    assert actual["min"] == expected["min"]
    assert actual["max"] == expected["max"]
    assert actual["mean"] == pytest.approx(expected["mean"], rel=1e-12)
    if expected["std"] is None:
        assert actual["std"] is None
    else:
        assert actual["std"] == pytest.approx(expected["std"], rel=1e-9)
    assert actual["first_reading"] == expected["first_reading"]
    assert actual["last_reading"] == expected["last_reading"]


def by_key(table: pa.Table, names: list[str]) -> dict:
    return {tuple(r[n] for n in names): r for r in table.to_pylist()}


# --- aggregate against the independent computation ------------------------------------------------------


@pytest.mark.parametrize(("day", "hours"), [(ORDINARY, 24), (SPRING, 23), (FALL, 25)], ids=str)
def test_aggregate_matches_independent_computation(day, hours):
    sensors = ["temperature", "humidity"]
    rows = synthetic_rows(day, LA, sensors, seed=day.toordinal())
    hourly, daily = aggregate(readings_frame(rows), day, LA)
    want_hourly, want_daily = expected_tables(rows, day, LA)

    assert hourly.schema == hourly_schema(False)
    assert daily.schema == daily_schema(False)
    got_hourly = by_key(hourly, ["sensor", "hour"])
    assert set(got_hourly) == set(want_hourly)
    assert hourly.num_rows == len(want_hourly) == hours * len(sensors)
    slots = {s.stamp: s for s in hour_slots(day, LA)}
    for key, want in want_hourly.items():
        got = got_hourly[key]
        assert_stats(got, want)
        assert got["local_date"] == day.isoformat()
        assert got["utc_start"] == slots[key[1]].start
        assert got["local_start"] == iso_local(slots[key[1]].start, LA)

    start, end = day_bounds(day, LA)
    got_daily = by_key(daily, ["sensor"])
    assert set(got_daily) == set(want_daily)
    for key, want in want_daily.items():
        got = got_daily[key]
        assert_stats(got, want)
        assert got["hours"] == float(hours)
        assert (got["utc_start"], got["utc_end"]) == (start, end)
        assert (got["local_start"], got["local_end"]) == (iso_local(start, LA), iso_local(end, LA))


def test_fall_back_day_keeps_t01_and_t01_2_apart():
    # Distinct values in each of the two 01:00 hours, so merging them would show.
    rows = [
        (utc(2025, 11, 2, 8, 10), "temperature", 1.0),
        (utc(2025, 11, 2, 8, 50), "temperature", 3.0),
        (utc(2025, 11, 2, 9, 10), "temperature", 10.0),
    ]
    hourly, daily = aggregate(readings_frame(rows), FALL, LA)
    got = by_key(hourly, ["hour"])
    assert set(got) == {("2025-11-02T01",), ("2025-11-02T01_2",)}
    assert got[("2025-11-02T01",)]["mean"] == 2.0
    assert got[("2025-11-02T01",)]["local_start"] == "2025-11-02T01:00:00-07:00"
    assert got[("2025-11-02T01_2",)]["mean"] == 10.0
    assert got[("2025-11-02T01_2",)]["local_start"] == "2025-11-02T01:00:00-08:00"
    assert daily.column("hours").to_pylist() == [25.0]


def test_spring_forward_day_has_23_hours():
    rows = synthetic_rows(SPRING, LA, ["pressure"], seed=3, nan_share=0)
    hourly, daily = aggregate(readings_frame(rows), SPRING, LA)
    stamps = hourly.column("hour").to_pylist()
    assert len(stamps) == 23 and "2025-03-09T02" not in stamps
    assert daily.column("hours").to_pylist() == [23.0]


def test_empty_hour_has_no_row():
    rows = synthetic_rows(ORDINARY, LA, ["temperature"], seed=5, skip_stamps={"2025-01-15T05"}, nan_share=0)
    hourly, _ = aggregate(readings_frame(rows), ORDINARY, LA)
    stamps = hourly.column("hour").to_pylist()
    assert len(stamps) == 23
    assert "2025-01-15T05" not in stamps
    assert "2025-01-15T04" in stamps and "2025-01-15T06" in stamps


@pytest.mark.parametrize("with_device", [False, True])
@pytest.mark.parametrize(
    "rows",
    [[], [(utc(2025, 1, 15, 12), "temperature", None), (utc(2025, 1, 15, 13), "humidity", float("nan"))]],
    ids=["no readings", "no values"],
)
def test_empty_day_gives_empty_tables_with_schema(rows, with_device):
    rows = [r + ("dev",) for r in rows] if with_device else rows
    hourly, daily = aggregate(readings_frame(rows, with_device), ORDINARY, LA)
    assert hourly.num_rows == 0 and daily.num_rows == 0
    assert hourly.schema == hourly_schema(with_device)
    assert daily.schema == daily_schema(with_device)


def test_single_reading_has_null_std():
    hourly, daily = aggregate(readings_frame([(utc(2025, 1, 15, 9, 30), "temperature", 4.5)]), ORDINARY, LA)
    (row,) = hourly.to_pylist()
    assert (row["count"], row["mean"], row["min"], row["max"], row["std"]) == (1, 4.5, 4.5, 4.5, None)
    assert row["first_reading"] == row["last_reading"] == utc(2025, 1, 15, 9, 30)
    assert daily.column("std").to_pylist() == [None]


def test_null_and_nan_values_are_not_counted():
    rows = [
        (utc(2025, 1, 15, 9, 0), "temperature", None),  # earliest, but no value
        (utc(2025, 1, 15, 9, 10), "temperature", 1.0),
        (utc(2025, 1, 15, 9, 20), "temperature", float("nan")),
        (utc(2025, 1, 15, 9, 30), "temperature", 3.0),
        (utc(2025, 1, 15, 9, 59), "temperature", None),  # latest, but no value
    ]
    hourly, daily = aggregate(readings_frame(rows), ORDINARY, LA)
    for table in (hourly, daily):
        (row,) = table.to_pylist()
        assert row["count"] == 2
        assert row["mean"] == 2.0
        assert row["std"] == pytest.approx(math.sqrt(2))
        assert row["first_reading"] == utc(2025, 1, 15, 9, 10)
        assert row["last_reading"] == utc(2025, 1, 15, 9, 30)


def test_rows_per_sensor_and_device():
    sensors, devices = ["temperature", "humidity"], ["station-1", "station-2"]
    rows = synthetic_rows(FALL, LA, sensors, devices=devices, seed=11)
    hourly, daily = aggregate(readings_frame(rows, with_device=True), FALL, LA)
    want_hourly, want_daily = expected_tables(rows, FALL, LA, with_device=True)
    assert hourly.schema == hourly_schema(True) and daily.schema == daily_schema(True)
    got_hourly = by_key(hourly, ["sensor", "device", "hour"])
    assert set(got_hourly) == set(want_hourly)
    assert len(got_hourly) == 25 * len(sensors) * len(devices)
    for key, want in want_hourly.items():
        assert_stats(got_hourly[key], want)
    got_daily = by_key(daily, ["sensor", "device"])
    assert set(got_daily) == {(s, d) for s in sensors for d in devices}
    for key, want in want_daily.items():
        assert_stats(got_daily[key], want)


def test_readings_without_device_form_their_own_group():
    rows = [
        (utc(2025, 1, 15, 9, 10), "temperature", 1.0, "a"),
        (utc(2025, 1, 15, 9, 20), "temperature", 5.0, None),
        (utc(2025, 1, 15, 9, 30), "temperature", 7.0, None),
    ]
    _, daily = aggregate(readings_frame(rows, with_device=True), ORDINARY, LA)
    got = {r["device"]: (r["count"], r["mean"]) for r in daily.to_pylist()}
    assert got == {"a": (1, 1.0), None: (2, 6.0)}


def test_hourly_rows_are_sorted_by_key_and_time():
    rows = synthetic_rows(FALL, LA, ["temperature", "humidity"], seed=2)
    hourly, _ = aggregate(readings_frame(rows), FALL, LA)
    keys = list(zip(hourly.column("sensor").to_pylist(), hourly.column("utc_start").to_pylist()))
    assert keys == sorted(keys)


# --- files --------------------------------------------------------------------------------------------------


def test_write_parquet_leaves_only_the_file(tmp_path):
    rows = synthetic_rows(ORDINARY, LA, ["temperature"], seed=1)
    hourly, _ = aggregate(readings_frame(rows), ORDINARY, LA)
    path = tmp_path / "hourly" / "date=2025-01-15" / "data.parquet"
    write_parquet(path, hourly)
    write_parquet(path, hourly)  # overwriting works too
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.parquet"]
    assert pq.read_table(path).equals(hourly)


def test_read_readings_round_trip(tmp_path):
    rows = synthetic_rows(ORDINARY, LA, ["temperature"], seed=4)
    frame = readings_frame(rows)
    path = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pandas(frame, schema=readings_schema(False), preserve_index=False), path)
    back = read_readings(path)
    pd.testing.assert_frame_equal(back, frame)


def test_hive_folders_read_back_as_one_dataset(tmp_path):
    root = tmp_path / "hourly"
    expected_rows = 0
    for day in (date(2025, 11, 1), FALL):
        rows = synthetic_rows(day, LA, ["temperature", "humidity"], devices=["d1"], seed=day.day)
        hourly, _ = aggregate(readings_frame(rows, with_device=True), day, LA)
        write_parquet(root / f"date={day.isoformat()}" / "data.parquet", hourly)
        expected_rows += hourly.num_rows
    assert expected_rows == (24 + 25) * 2

    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == expected_rows
    assert "date" in table.column_names
    assert {str(d) for d in table.column("date").to_pylist()} == {"2025-11-01", "2025-11-02"}
    # The partition column agrees with the local_date column in every row.
    assert [str(d) for d in table.column("date").to_pylist()] == table.column("local_date").to_pylist()

    frame = pd.read_parquet(root)
    assert len(frame) == expected_rows
    assert "date" in frame.columns
    assert set(frame["date"].astype(str)) == {"2025-11-01", "2025-11-02"}

    ((count, dates, t01_2),) = duckdb.sql(
        f"SELECT count(*), count(DISTINCT date), count(*) FILTER (WHERE hour = '2025-11-02T01_2') "
        f"FROM read_parquet('{root}/*/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert (count, dates, t01_2) == (expected_rows, 2, 2)
    per_date = dict(
        duckdb.sql(
            f"SELECT CAST(date AS VARCHAR), count(*) FROM read_parquet('{root}/*/*.parquet', hive_partitioning=true) "
            "GROUP BY 1"
        ).fetchall()
    )
    assert per_date == {"2025-11-01": 48, "2025-11-02": 50}
