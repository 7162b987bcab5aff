"""A steady cron run redraws only the charts whose readings changed; the others are copied, byte for byte."""

from __future__ import annotations

import json
import os
import signal
from datetime import date
from pathlib import Path

import pandas as pd
from conftest import utc

from sensorcharts import atomic
from sensorcharts.chartcache import CACHE_ROOT
from sensorcharts.charts import render_cumulative, render_day, sensors_from_config
from sensorcharts.tables import read_readings
from sensorcharts.timegrid import zone
from test_workflow import minute_readings
from workflow_runner import Workdir

LA = zone("America/Los_Angeles")
TODAY = date(2025, 1, 13)
SENSORS = {"temperature": {"display_name": "Temperature", "unit": "°C"},
           "humidity": {"display_name": "Humidity", "unit": "%"}}


def now(hour: int, minute: int) -> str:
    """An instant of TODAY's local evening (PST is UTC−8), as config ``now``."""
    return utc(2025, 1, 14, hour - 16, minute).isoformat()


def drawn(wd: Workdir, kind: str) -> set[tuple[str, str]]:
    """(sensor, stamp) of the charts the last render job of ``kind`` drew (its metadata's ``drawn``)."""
    metas = json.loads((wd.path / f"results/metadata/{kind}/{TODAY}.json").read_text())
    assert all(m["inputs_digest"] for m in metas)
    return {(m["sensor_type"], m["stamp"]) for m in metas if m["drawn"]}


def assert_charts_are_fresh_draws(wd: Workdir, tmp_path: Path) -> None:
    """Every chart of TODAY (copied or drawn) has the bytes a fresh figure without any cache gives."""
    sensors = sensors_from_config(SENSORS)
    charts = {p: p.read_bytes() for p in wd.files(f"results/images/*/*/{TODAY}*.png")}
    daily = {p.parts[-3]: str(tmp_path / "fresh" / p.relative_to(wd.path)) for p in charts if p.parts[-2] == "daily"}
    hourly = {(p.parts[-3], p.stem): str(tmp_path / "fresh" / p.relative_to(wd.path))
              for p in charts if p.parts[-2] == "hourly"}
    cumulative = {p.parts[-3]: str(tmp_path / "fresh" / p.relative_to(wd.path))
                  for p in charts if p.parts[-2] == "cumulative"}
    render_day(read_readings(wd.path / f"results/readings/date={TODAY}/data.parquet"), TODAY, LA, sensors, daily,
               hourly)
    tables = [pd.read_parquet(p) for p in wd.files("results/tables/hourly/date=*/data.parquet")]
    render_cumulative(pd.concat(tables, ignore_index=True), TODAY, LA, 2, sensors, cumulative)
    assert len(charts) == 2 * (1 + 24 + 1)
    for path, data in charts.items():
        assert data == (tmp_path / "fresh" / path.relative_to(wd.path)).read_bytes(), path


def test_a_steady_cron_run_redraws_only_the_charts_whose_readings_changed(sqlite_db, tmp_path):
    sqlite_db.insert(minute_readings(date(2025, 1, 12), TODAY, LA))
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start=str(TODAY), end=str(TODAY), lookback_days=0,
                 cumulative_days=2, sensors=SENSORS)
    wd.snakemake("--cores", "2", "latest", "--config", f"now={now(23, 2)}")
    assert len(drawn(wd, "day")) == 2 * (1 + 24)  # the first run draws everything

    # Five more minutes of readings (23:02-23:07): only the current hour and the daily charts show them.
    wd.snakemake("--cores", "2", "latest", "--config", f"now={now(23, 7)}")
    assert drawn(wd, "day") == {(s, stamp) for s in SENSORS for stamp in (str(TODAY), f"{TODAY}T23")}
    log = (wd.path / f"logs/render_day/{TODAY}.log").read_text()
    assert "50 images, 4 drawn, 46 unchanged (copied from the chart cache)" in log
    assert drawn(wd, "cumulative") == {(s, str(TODAY)) for s in SENSORS}  # this hour's means changed
    assert_charts_are_fresh_draws(wd, tmp_path / "first")

    # A corrected reading of an earlier hour (05:30 PST) redraws that hour, of that sensor only.
    sqlite_db.execute("UPDATE sensor_readings SET value = 99 WHERE sensor_type = 'humidity' AND recorded_at = %s",
                      (sqlite_db._stamp(utc(2025, 1, 13, 13, 30)),))
    wd.snakemake("--cores", "2", "latest", "--config", f"now={now(23, 7)}")
    assert drawn(wd, "day") == {("humidity", str(TODAY)), ("humidity", f"{TODAY}T05")}
    assert drawn(wd, "cumulative") == {("humidity", str(TODAY))}
    assert_charts_are_fresh_draws(wd, tmp_path / "second")


def test_temporary_files_of_killed_render_jobs_leave_their_chart_caches(sqlite_db, tmp_path):
    """A render job killed while keeping a chart in its cache leaves a temporary file there (not a chart:
    the job's own clean-up skips it); the next run that redoes the day removes it, and keeps one whose
    writer still lives."""
    sqlite_db.insert(minute_readings(date(2025, 1, 12), TODAY, LA))
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start=str(TODAY), end=str(TODAY), lookback_days=0,
                 cumulative_days=2, sensors=SENSORS)
    wd.snakemake("--cores", "2", "latest", "--config", f"now={now(23, 2)}")
    caches = [wd.path / CACHE_ROOT / kind / str(TODAY) for kind in ("day", "cumulative")]
    killed = []
    for cache in caches:
        assert any(p.suffix == ".png" for p in cache.iterdir())
        writer = os.fork()
        if writer == 0:
            try:
                with atomic.replacing(cache / "killed.png") as tmp:
                    tmp.write_bytes(b"\x89PNG half")
                    os.kill(os.getpid(), signal.SIGKILL)
            finally:
                os._exit(1)  # never back into pytest
        assert os.waitpid(writer, 0)[1] == signal.SIGKILL
        killed += [p for p in cache.iterdir() if p.suffix == ".tmp"]
    assert len(killed) == 2
    live = atomic.temporary_name(caches[0] / "live.png")  # this process's: it may still rename it
    live.write_bytes(b"\x89PNG being written")

    run = wd.snakemake("--cores", "2", "latest", "--config", f"now={now(23, 7)}")
    assert "removed 2 temporary file(s) left by killed jobs" in run.output
    assert not any(p.exists() for p in killed) and live.exists()
