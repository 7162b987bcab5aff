"""The real ``snakemake`` end to end, against a SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import utc

from sensorcharts.timegrid import day_bounds, hour_slots, zone
from workflow_runner import Workdir

LA = zone("America/Los_Angeles")
SENSORS = ("temperature", "humidity", "pressure")


def minute_readings(first: date, last: date, tz, sensors=("temperature", "humidity"), skip=None):
    """One reading a minute per sensor over local days ``first``..``last``; ``skip(t)`` drops minutes."""
    start, _ = day_bounds(first, tz)
    _, end = day_bounds(last, tz)
    rows = []
    t = start
    i = 0
    while t < end:
        if not (skip and skip(t)):
            for k, sensor in enumerate(sensors):
                rows.append((t, sensor, round(10 * k + np.sin(i / 90.0) * 5, 3), "station-1"))
        t += timedelta(minutes=1)
        i += 1
    return rows


def test_fall_back_days_against_sqlite(sqlite_db, tmp_path):
    """Three local days around the fall-back: every image, table and dry-run checked."""
    gap_start, gap_end = utc(2025, 11, 1, 17, 0), utc(2025, 11, 1, 20, 0)  # 10:00-13:00 PDT
    rows = minute_readings(date(2025, 11, 1), date(2025, 11, 3), LA, skip=lambda t: gap_start <= t < gap_end)
    rows += [rows[0]]  # an exact duplicate, dropped by the extract
    sqlite_db.insert(rows)
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-11-01", end="2025-11-03", cumulative_days=2,
                 now="2025-11-20T00:00:00+00:00")
    run = wd.snakemake("--cores", "1")
    # Jobs in the order they started: the heatmaps (priority -1) wait until no day job is left to start,
    # so a backfill does not end with one long day job on one core.
    started = [line.split()[1].rstrip(":") for line in run.output.splitlines()
               if line.startswith(("rule ", "localrule "))]
    assert started.count("render_cumulative") == 3
    assert max(i for i, name in enumerate(started) if name.startswith("render_day_")) < started.index(
        "render_cumulative")

    hourly = {s: [p.stem for p in wd.files(f"results/images/{s}/hourly/*.png")] for s in SENSORS}
    for sensor in SENSORS:
        assert len(hourly[sensor]) == 24 + 25 + 24
        assert hourly[sensor] == sorted(hourly[sensor])
        assert {"2025-11-02T01", "2025-11-02T01_2"} <= set(hourly[sensor])
        for kind in ("daily", "cumulative"):
            assert [p.stem for p in wd.files(f"results/images/{sensor}/{kind}/*.png")] == [
                "2025-11-01", "2025-11-02", "2025-11-03"]

    # Extracts: one file per local day within its UTC bounds, duplicates dropped, sorted.
    for day in (date(2025, 11, 1), date(2025, 11, 2), date(2025, 11, 3)):
        table = pq.read_table(wd.path / f"results/readings/date={day}/data.parquet")
        start, end = day_bounds(day, LA)
        expected = [r for r in rows[:-1] if start <= r[0] < end]
        assert table.num_rows == len(expected)
        assert str(table.schema.field("recorded_at").type) == "timestamp[us, tz=UTC]"
        times = table.column("recorded_at").to_pandas()
        assert times.is_monotonic_increasing and times.iloc[0] == pd.Timestamp(start)

    # Hourly table of the 25-hour day, checked against the rows inserted.
    hourly_table = pd.read_parquet(wd.path / "results/tables/hourly/date=2025-11-02/data.parquet")
    temps = hourly_table[hourly_table["sensor"] == "temperature"].set_index("hour")
    assert len(temps) == 25
    for slot in hour_slots(date(2025, 11, 2), LA):
        values = [v for t, s, v, _ in rows[:-1] if s == "temperature" and slot.start <= t < slot.end]
        row = temps.loc[slot.stamp]
        assert row["count"] == len(values)
        assert row["mean"] == pytest.approx(np.mean(values))
        assert row["std"] == pytest.approx(np.std(values, ddof=1))
        assert (row["min"], row["max"]) == (min(values), max(values))
    assert temps.loc["2025-11-02T01_2", "local_start"] == "2025-11-02T01:00:00-08:00"
    # The gap: hours 10-12 PDT of Nov 1 have no row.
    nov1 = pd.read_parquet(wd.path / "results/tables/hourly/date=2025-11-01/data.parquet")
    assert not {"2025-11-01T10", "2025-11-01T11", "2025-11-01T12"} & set(nov1["hour"])

    # Metadata of every image, including the empty pressure charts.
    meta = json.loads((wd.path / "results/metadata/day/2025-11-02.json").read_text())
    daily = {m["sensor_type"]: m for m in meta if m["interval"] == "daily"}
    assert daily["temperature"]["data_points"] == 25 * 60
    assert daily["pressure"]["data_points"] == 0
    assert daily["temperature"]["start_time"] == "2025-11-02T00:00:00-07:00"
    assert daily["temperature"]["end_time"] == "2025-11-03T00:00:00-08:00"
    assert all(m["processing_time"] > 0 for m in meta)

    assert "Nothing to be done" in wd.snakemake("-n").output


def test_fixed_pst_against_postgresql(postgres_db, tmp_path):
    """Etc/GMT+8 on the fall-back date: a 24-hour day, extracted through COPY from a real server."""
    gmt8 = zone("Etc/GMT+8")
    rows = minute_readings(date(2025, 11, 2), date(2025, 11, 2), gmt8, sensors=SENSORS)
    postgres_db.insert(rows + [(utc(2025, 11, 2, 7, 59), "wind", 3.0, "x")])  # not configured: ignored
    wd = Workdir(tmp_path / "wd", postgres_db.url, start="2025-11-02", end="2025-11-02", cumulative_days=1,
                 timezone="Etc/GMT+8", now="2025-11-20T00:00:00+00:00")
    wd.snakemake("--cores", "2")

    table = pq.read_table(wd.path / "results/readings/date=2025-11-02/data.parquet")
    assert table.num_rows == 24 * 60 * 3
    assert set(table.column("sensor").to_pylist()) == set(SENSORS)
    for sensor in SENSORS:
        stamps = [p.stem for p in wd.files(f"results/images/{sensor}/hourly/*.png")]
        assert stamps == [f"2025-11-02T{h:02d}" for h in range(24)]
    daily = pd.read_parquet(wd.path / "results/tables/daily")  # hive dataset: one folder per day
    assert list(daily["hours"]) == [24.0] * 3 and set(daily["count"]) == {1440}
    assert "Nothing to be done" in wd.snakemake("-n").output


def test_one_image_by_path_makes_only_what_it_needs(sqlite_db, tmp_path):
    sqlite_db.insert(minute_readings(date(2025, 1, 14), date(2025, 1, 16), LA))
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-01-14", end="2025-01-16",
                 now="2025-11-20T00:00:00+00:00")
    run = wd.snakemake("--cores", "1", "results/images/temperature/daily/2025-01-15.png")
    assert run.jobs() == {"extract_day": 1, "render_day_ordinary": 1}  # nothing uploaded or indexed
    assert [p.parent.name for p in wd.files("results/readings/*/data.parquet")] == ["date=2025-01-15"]
    assert not wd.files("results/images/*/cumulative/*.png")


def test_today_has_only_the_hours_that_started(sqlite_db, tmp_path):
    now = utc(2025, 1, 15, 18, 30)  # 10:30 PST
    sqlite_db.insert([r for r in minute_readings(date(2025, 1, 15), date(2025, 1, 15), LA) if r[0] <= now])
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-01-15", end="2025-01-20", cumulative_days=1,
                 now=now.isoformat())
    wd.snakemake("--cores", "2")
    stamps = [p.stem for p in wd.files("results/images/temperature/hourly/*.png")]
    assert stamps == [f"2025-01-15T{h:02d}" for h in range(11)]  # 00..10; days after today are not charted
    assert [p.stem for p in wd.files("results/images/temperature/daily/*.png")] == ["2025-01-15"]


def test_demo_database_spring_forward_day(tmp_path):
    """No database configured: the demo SQLite database is created and charted (23-hour day). Its clock is
    set to the day's last hour, so the day is today: the demo is not a sensor network to watch, so no
    newest-reading gauge is written even for a run that charts today."""
    wd = Workdir(tmp_path / "wd", None, start="2025-03-09", end="2025-03-09", cumulative_days=1,
                 now="2025-03-09T23:30:00-07:00")
    wd.snakemake("--cores", "2")
    assert (wd.path / "resources/demo/sensor_readings.sqlite").exists()
    assert not (wd.path / "results/metrics/sensor_charts_readings.prom").exists()
    for sensor in SENSORS:
        stamps = [p.stem for p in wd.files(f"results/images/{sensor}/hourly/*.png")]
        assert len(stamps) == 23 and "2025-03-09T02" not in stamps
    hourly = pd.read_parquet(wd.path / "results/tables/hourly/date=2025-03-09/data.parquet")
    # The demo's outage 04:00-06:30 PDT leaves hours 04 and 05 without rows, 06 with half an hour.
    temps = hourly[hourly["sensor"] == "temperature"].set_index("hour")
    assert "2025-03-09T04" not in temps.index and "2025-03-09T05" not in temps.index
    assert temps.loc["2025-03-09T06", "count"] == 30
    assert "Nothing to be done" in wd.snakemake("-n").output
