"""What months of cron runs rely on and leave behind: the heartbeat that alerting watches, written by every
run that ends without error (those with nothing to do included), each sensor's newest reading (so that a
sensor that falls silent alerts), and Snakemake's records of past runs, pruned after `run_logs_days`."""

from __future__ import annotations

import os
import re
import time
from datetime import date, datetime
from pathlib import Path

from conftest import utc

from sensorcharts.timegrid import zone
from test_workflow import minute_readings
from workflow_runner import Workdir

LA = zone("America/Los_Angeles")
NOW = utc(2025, 1, 14, 6, 0).isoformat()  # 22:00 on 2025-01-13 in Los Angeles
HEARTBEAT = "results/metrics/sensor_charts_run.prom"
READINGS = "results/metrics/sensor_charts_readings.prom"
DAY_S = 86400


def cron(tmp_path: Path, db) -> Workdir:
    db.insert(minute_readings(date(2025, 1, 13), date(2025, 1, 13), LA))
    return Workdir(tmp_path / "wd", db.url, start=None, end=None, lookback_days=0, cumulative_days=1)


def heartbeat(wd: Workdir) -> float | None:
    path = wd.path / HEARTBEAT
    if not path.exists():
        return None
    return float(re.search(r"^sensor_charts_last_successful_run_timestamp_seconds (\S+)$", path.read_text(), re.M)[1])


def test_every_run_that_ends_without_error_writes_the_heartbeat_those_with_nothing_to_do_included(sqlite_db,
                                                                                                   tmp_path):
    wd = cron(tmp_path, sqlite_db)
    wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}")
    first = heartbeat(wd)
    assert first is not None

    nothing = wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}")
    assert "Nothing to be done" in nothing.output
    second = heartbeat(wd)
    assert second > first  # a cron with no new readings is alive, not stale

    assert "Nothing to be done" in wd.snakemake("-n", "latest", "--config", f"now={NOW}").output
    assert heartbeat(wd) == second  # a dry-run runs nothing

    os.replace(sqlite_db.path, tmp_path / "moved.sqlite")  # the database is gone: the run fails
    failed = wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}", check=False)
    assert failed.returncode != 0
    assert heartbeat(wd) == second


def newest_readings(wd: Workdir) -> dict[str, float]:
    text = (wd.path / READINGS).read_text()
    pattern = r'^sensor_charts_newest_reading_timestamp_seconds\{sensor="(\w+)"\} (\S+)$'
    return {sensor: float(value) for sensor, value in re.findall(pattern, text, re.M)}


def test_each_sensors_newest_reading_up_to_now_is_written_so_that_a_silent_sensor_alerts(sqlite_db, tmp_path):
    wd = cron(tmp_path, sqlite_db)  # temperature and humidity every minute of the day; pressure never
    wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}")
    last_minute = utc(2025, 1, 14, 5, 59).timestamp()
    assert newest_readings(wd) == {"temperature": last_minute, "humidity": last_minute, "pressure": 0}

    late = utc(2025, 1, 14, 5, 59, 30)
    sqlite_db.insert([(late, "humidity", 1.0, "station-1"),
                      (utc(2025, 1, 14, 6, 30), "temperature", 1.0, "station-1")])  # stamped after now
    wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}")
    assert newest_readings(wd) == {"temperature": last_minute, "humidity": late.timestamp(), "pressure": 0}

    before = wd.snapshot(READINGS)
    nothing = wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}")
    assert "Nothing to be done" in nothing.output
    assert wd.snapshot(READINGS) == before  # the same readings: the file is left alone

    (wd.path / READINGS).unlink()
    wd.snakemake("-n", "latest", "--config", f"now={NOW}")
    assert not (wd.path / READINGS).exists()  # a dry-run writes nothing


def test_records_of_runs_older_than_run_logs_days_are_deleted_after_each_run(sqlite_db, tmp_path):
    wd = cron(tmp_path, sqlite_db)
    wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}")
    folder = wd.path / ".snakemake" / "log"
    (own,) = folder.glob("*.snakemake.log")
    now = time.time()

    def plant(started_days_ago: float, written_days_ago: float, name: str | None = None) -> str:
        """A past run's record, named as Snakemake names them (its start in local time)."""
        name = name or datetime.fromtimestamp(now - started_days_ago * DAY_S).isoformat().replace(":", "") + \
            ".snakemake.log"
        (folder / name).write_text("a past run\n")
        os.utime(folder / name, (now - written_days_ago * DAY_S,) * 2)
        return name

    old = plant(15, 15)
    plant(13, 13)
    plant(20, 1)  # a run that started 20 days ago and wrote its record yesterday
    plant(30, 30, "notes.txt")

    def records() -> set[str]:
        return {p.name for p in folder.iterdir()}

    before = records()
    wd.snakemake("-n", "latest", "--config", f"now={NOW}")
    assert records() == before  # a dry-run deletes nothing (and writes no record)

    wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}", "run_logs_days=null")
    kept_all = records()
    assert before < kept_all and len(kept_all) == len(before) + 1  # null keeps them all, and adds this run's

    nothing = wd.snakemake("--cores", "2", "latest", "--config", f"now={NOW}")
    assert "Nothing to be done" in nothing.output
    after = records()
    this_run = after - kept_all
    assert len(this_run) == 1  # the record of the run that pruned is kept
    assert after == (kept_all - {old}) | this_run and own.name in after
    assert "notes.txt" in after  # only Snakemake's records of runs are touched
