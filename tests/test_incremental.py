"""The DAG follows the database: exactly the affected files are redone, the rest keep bytes and mtime."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import make_postgres, make_sqlite, utc
from PIL import Image

from sensorcharts import atomic
from sensorcharts.timegrid import zone
from test_workflow import minute_readings
from workflow_runner import Workdir

LA = zone("America/Los_Angeles")
SENSORS = {"temperature": {"display_name": "Temperature", "unit": "°C"},
           "humidity": {"display_name": "Humidity", "unit": "%"}}
NOW = utc(2025, 1, 13, 20, 0)  # 12:00 PST on 2025-01-13, "today"


def changed(before: dict, after: dict) -> set[str]:
    """Paths created, deleted, or rewritten (other bytes or other mtime)."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


WINDOW = ("2025-01-12", "2025-01-13")  # today and the one look-back day: published chart by chart
# What every run of the index job rewrites: its ledger, its schedule, the Prometheus counters.
INDEXED = {"results/publish/ledger.sqlite", "results/publish/schedule.json", "results/metrics/sensor_charts.prom"}


def receipts_of(day: str, kind: str) -> str:
    """A day in the cron window has receipts files per upload job; a finished day one for its folder."""
    return f"results/receipts/{kind}/{day}.json" if day in WINDOW else f"results/receipts/folder/{day}.json"


def files_of_day(wd: Workdir, day: str) -> set[str]:
    """Everything a changed day must redo, except cumulative images (they depend on the window)."""
    paths = {f"results/fingerprints/{day}.txt", f"results/readings/date={day}/data.parquet",
             f"results/tables/hourly/date={day}/data.parquet", f"results/tables/daily/date={day}/data.parquet",
             f"results/metadata/day/{day}.json", receipts_of(day, "day")}
    for sensor in SENSORS:
        paths |= {str(p.relative_to(wd.path)) for p in wd.path.glob(f"results/images/{sensor}/*/{day}*.png")
                  if "/cumulative/" not in str(p)}
    return paths


def cumulative_of(wd: Workdir, *days: str) -> set[str]:
    paths = {f"results/metadata/cumulative/{d}.json" for d in days}
    paths |= {receipts_of(d, "cumulative") for d in days}
    return paths | {f"results/images/{s}/cumulative/{d}.png" for s in SENSORS for d in days}


# The report job rewrites its pages (and Snakemake the timestamp of its folder of chart links) on every run.
REPORT_PAGES = {"results/report/charts.json", "results/report/statistics.html", "results/report/published.html",
                "results/report/charts/.snakemake_timestamp"}


def with_report(paths: set[str]) -> set[str]:
    """``paths`` redone by a run of ``all``, and what its report job rewrites: its pages, the links to the charts."""
    links = {re.sub(r"^results/images/(.+)\.png$", r"results/report/charts/\1/chart.png", p)
             for p in paths if p.startswith("results/images/")}
    return paths | links | REPORT_PAGES


CHARTED = dict(start="2025-01-10", end="2025-01-13", cumulative_days=2, lookback_days=1, now=NOW.isoformat(),
               sensors=SENSORS)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def charted_template(request, tmp_path_factory):
    """Four local days, 2025-01-10 .. 2025-01-13 (today, up to noon), charted and indexed once per backend."""
    root = tmp_path_factory.mktemp(f"template-{request.param}")
    if request.param == "sqlite":
        db = make_sqlite(root / "readings.sqlite")
    else:
        db = make_postgres(request.getfixturevalue("postgres_server"), "template")
    db.insert([r for r in minute_readings(date(2025, 1, 9), date(2025, 1, 13), LA) if r[0] < NOW])
    wd = Workdir(root / "wd", db.url, **CHARTED)
    wd.snakemake("--cores", "2")
    wd.snakemake("--cores", "2", "latest")  # as in a deployment where a backfill and cron have both run
    yield db, wd
    if request.param == "postgresql":
        db.drop()


@pytest.fixture
def charted(charted_template, tmp_path, request):
    """A copy of the charted template (database, results and Snakemake's metadata, mtimes kept)."""
    template_db, template_wd = charted_template
    if template_db.kind == "sqlite":
        shutil.copy2(template_db.path, tmp_path / "readings.sqlite")
        db = make_sqlite(tmp_path / "readings.sqlite", create=False)
    else:
        db = make_postgres(request.getfixturevalue("postgres_server"), "copy", template=template_db)
        request.addfinalizer(db.drop)
    shutil.copytree(template_wd.path, tmp_path / "wd", symlinks=True)
    return db, Workdir(tmp_path / "wd", db.url, **CHARTED)


def test_no_op_run_executes_no_job_and_touches_nothing(charted):
    _, wd = charted
    before = wd.snapshot()
    run = wd.snakemake("--cores", "2")
    assert run.jobs() == {} and "Nothing to be done" in run.output
    assert changed(before, wd.snapshot()) == set()


@pytest.mark.parametrize("change", ["insert", "update", "delete"])
def test_changed_past_day_redoes_that_day_and_its_cumulative_images(charted, change):
    db, wd = charted
    if change == "insert":
        db.insert([(utc(2025, 1, 11, 20, 0, 30), "temperature", 99.0, "station-1")])
    elif change == "update":
        db.execute("UPDATE sensor_readings SET value = 42 WHERE recorded_at = %s AND sensor_type = 'humidity'",
                   (db._stamp(utc(2025, 1, 11, 20, 0)),))
    else:
        db.execute("DELETE FROM sensor_readings WHERE recorded_at = %s", (db._stamp(utc(2025, 1, 11, 20, 0)),))
    before = wd.snapshot()
    assert "2025-01-11" in wd.snakemake("-n").output  # the dry-run shows what will be redone
    run = wd.snakemake("--cores", "2")
    # The window is 2 days: 2025-01-11 appears in the cumulative images of the 11th and the 12th.
    assert changed(before, wd.snapshot()) == with_report(files_of_day(wd, "2025-01-11") | cumulative_of(
        wd, "2025-01-11", "2025-01-12") | {"results/kv/range.json"} | INDEXED)
    # The 11th is finished: its charts go up as one folder; the 12th's heatmaps, in the window, one by one.
    assert run.jobs() == {"extract_day": 1, "render_day_ordinary": 1, "render_cumulative": 2,
                          "upload_folder_ordinary": 1, "upload_cumulative": 1, "publish_range": 1,
                          "prepare_report": 1, "all": 1}


def test_rows_of_an_unconfigured_sensor_change_nothing(charted):
    db, wd = charted
    db.insert([(utc(2025, 1, 11, 20, 0), "wind", 3.0, "station-1")])
    before = wd.snapshot()
    assert wd.snakemake("--cores", "2").jobs() == {}
    assert changed(before, wd.snapshot()) == set()


def test_today_picks_up_new_rows_and_new_hours(charted):
    db, wd = charted
    later = NOW + timedelta(minutes=75)  # 13:15 PST: hour 13 has started
    db.insert([(utc(2025, 1, 13, 20, 30), "temperature", 5.0, "station-1"),
               (utc(2025, 1, 13, 21, 5), "temperature", 6.0, "station-1")])
    before = wd.snapshot()
    wd.snakemake("--cores", "2", "--config", f"now={later.isoformat()}")
    after = wd.snapshot()
    assert changed(before, after) == with_report(files_of_day(wd, "2025-01-13") | cumulative_of(wd, "2025-01-13") | {
        "results/kv/range.json", "results/publish/index-due.txt", "results/metrics/sensor_charts_readings.prom",
    } | INDEXED)  # the newest temperature reading moved on
    assert "results/images/temperature/hourly/2025-01-13T13.png" in after
    assert "results/images/temperature/hourly/2025-01-13T14.png" not in after


def test_cron_target_covers_today_and_the_look_back_only(charted):
    db, wd = charted
    # A change on the 10th is outside the cron window (today and 1 look-back day, windows of 2 days)…
    db.insert([(utc(2025, 1, 10, 20, 0, 30), "temperature", 99.0, "station-1")])
    before = wd.snapshot()
    run = wd.snakemake("--cores", "2", "latest")
    assert run.jobs() == {} and changed(before, wd.snapshot()) == set()
    # …while one on the 12th is inside it.
    db.insert([(utc(2025, 1, 12, 20, 0, 30), "temperature", 99.0, "station-1")])
    run = wd.snakemake("--cores", "2", "latest")
    assert changed(before, wd.snapshot()) == files_of_day(wd, "2025-01-12") | cumulative_of(
        wd, "2025-01-12", "2025-01-13") | {"results/kv/recent.json"} | INDEXED
    # The backfill target still catches the change on the 10th.
    assert wd.snakemake("--cores", "2").jobs()["extract_day"] == 1


def test_config_change_redoes_only_what_it_affects(charted):
    _, wd = charted
    before = wd.snapshot()
    run = wd.snakemake("--cores", "2", "--config", "cumulative_days=3")
    # Only the cumulative images change. The 3-day window of the 10th reaches back to the 8th, which has
    # no readings: its fingerprint says so, and nothing is extracted for it.
    assert set(run.jobs()) == {"render_cumulative", "upload_cumulative", "upload_folder_ordinary", "publish_range",
                               "prepare_report", "all"}
    assert run.jobs()["render_cumulative"] == 4
    # The finished days' folders hold their heatmaps: they are redone (their other charts keep their bytes).
    assert {p for p in changed(before, wd.snapshot()) if "/cumulative/" not in p and "/images/" not in p} == \
        REPORT_PAGES | INDEXED | {"results/kv/range.json", "results/fingerprints/2025-01-08.txt",
                                  "results/receipts/folder/2025-01-10.json", "results/receipts/folder/2025-01-11.json"}
    assert Path(wd.path / "results/fingerprints/2025-01-08.txt").read_text().startswith("rows=0 ")


def test_rows_arriving_on_an_empty_window_day_redo_the_heatmaps_that_show_it(charted):
    db, wd = charted
    three = ("--config", "cumulative_days=3")
    wd.snakemake("--cores", "2", *three)
    assert not (wd.path / "results/readings/date=2025-01-08").exists()
    before = wd.snapshot()
    db.insert([(utc(2025, 1, 8, 20, 0), "temperature", 7.5, "station-1")])  # noon PST on the 8th
    run = wd.snakemake("--cores", "2", *three)
    # The 8th is in the window of the 10th only (the range starts on the 10th).
    assert run.jobs()["extract_day"] == 1 and run.jobs()["render_cumulative"] == 1
    assert {p for p in changed(before, wd.snapshot()) if p.startswith("results/images/") and "/cumulative/" in p} == {
        f"results/images/{s}/cumulative/2025-01-10.png" for s in SENSORS}
    meta = json.loads((wd.path / "results/metadata/cumulative/2025-01-10.json").read_text())
    temperature = next(m for m in meta if m["sensor_type"] == "temperature")
    hourly = pd.read_parquet(wd.path / "results/tables/hourly")
    in_window = hourly[hourly["local_date"].isin(["2025-01-08", "2025-01-09", "2025-01-10"])
                       & (hourly["sensor"] == "temperature")]
    assert temperature["data_points"] == int(in_window["count"].sum())
    assert in_window[in_window["local_date"] == "2025-01-08"]["count"].sum() == 1


def test_overlapping_run_skips_with_one_line(sqlite_db, tmp_path):
    sqlite_db.insert(minute_readings(date(2025, 1, 1), date(2025, 1, 3), LA))
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-01-01", end="2025-01-03", cumulative_days=1,
                 now=NOW.isoformat(), sensors=SENSORS)
    first = wd.start("--cores", "1")
    try:
        deadline = time.monotonic() + 60
        while not (wd.path / ".snakemake" / "sensor-charts.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = wd.snakemake("--cores", "1", "latest", wrapper=True)
        assert second.returncode == 0
        assert second.output.strip().splitlines() == [
            "sensor-charts: skipped: another run holds the lock .snakemake/sensor-charts.lock"]
    finally:
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    assert "Nothing to be done" in wd.snakemake("-n").output


def test_killed_run_is_recovered_by_the_next(sqlite_db, tmp_path):
    sqlite_db.insert(minute_readings(date(2025, 1, 1), date(2025, 1, 3), LA))
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-01-01", end="2025-01-03", cumulative_days=1,
                 now=NOW.isoformat(), sensors=SENSORS)
    first = wd.start("--cores", "2")
    deadline = time.monotonic() + 120
    while len(wd.files("results/images/*/hourly/*.png")) < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # snakemake and its running jobs, mid-write
    first.wait()
    assert wd.files(".snakemake/locks/*"), "a killed run leaves Snakemake's lock behind"
    # What a job killed mid-write leaves (the kill above may or may not have caught one): a writer that dies
    # between writing its temporary file and renaming it into place.
    writer = os.fork()
    if writer == 0:
        try:
            with atomic.replacing(wd.path / "results/images/temperature/hourly/2025-01-02T05.png") as tmp:
                tmp.write_bytes(b"\x89PNG half")
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)  # never back into pytest
    assert os.waitpid(writer, 0)[1] == signal.SIGKILL and wd.files("results/**/.*.tmp")

    run = wd.snakemake("--cores", "2", wrapper=True)
    assert run.returncode == 0
    assert "temporary file(s) left by killed jobs" in run.output
    assert "Nothing to be done" in wd.snakemake("-n").output
    assert not wd.files("results/**/.*.tmp")
    for path in wd.files("results/**/*.parquet"):
        pq.read_table(path)
    for path in wd.files("results/images/**/*.png"):
        Image.open(path).load()  # a truncated PNG raises
    assert len(wd.files("results/images/temperature/hourly/*.png")) == 3 * 24
