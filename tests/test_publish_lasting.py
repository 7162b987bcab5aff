"""Publishing over days and weeks, against doubles that count what the providers bill: Pinata's pinned files
(a folder counts as one) and deletes, Cloudflare KV's writes per UTC day (10048 past the plan's limit).

Time is simulated: each run gets ``--config now=…`` and both doubles' clocks are set to the same instant, so a
test crosses hours, local midnights and UTC midnights in seconds."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta

import pytest
import requests
import yaml
from conftest import utc
from test_publish import CF_TOKEN, FAST_RETRIES, JWT, SENSORS, credentials, root_of

from doubles import KVDouble, PinataDouble
from sensorcharts.pinquota import PinQuota
from sensorcharts.timegrid import zone
from test_workflow import minute_readings
from workflow_runner import Workdir

UTC_ZONE = zone("UTC")
LA = zone("America/Los_Angeles")
DATED_PER_DAY = len(SENSORS) * (24 + 2)


class Deployment:
    """A working directory publishing to the doubles, with a clock shared by the workflow and the doubles."""

    def __init__(self, tmp_path, db, pinata, kv, **config):
        self.db, self.pinata, self.kv = db, pinata, kv
        settings = dict(start=None, end=None, cumulative_days=1, sensors=SENSORS, upload=FAST_RETRIES)
        settings.update(config)
        self.now = datetime.fromisoformat(settings["now"])
        self.wd = Workdir(tmp_path / "wd", db.url, env=credentials(pinata, kv), **settings)
        self.set_clock(self.now)

    def set_clock(self, now: datetime) -> None:
        self.now = now
        self.pinata.clock = self.kv.clock = now.timestamp

    def run(self, *targets: str, check: bool = True, minutes: float | None = None, readings_until=None):
        """Move the clock ``minutes`` on (readings arrive up to then, or up to ``readings_until``) and run."""
        if minutes is not None:
            later = self.now + timedelta(minutes=minutes)
            until = readings_until or later
            self.db.insert([r for r in minute_readings(self.now.astimezone(UTC_ZONE).date() - timedelta(days=1),
                                                       until.astimezone(UTC_ZONE).date() + timedelta(days=1),
                                                       UTC_ZONE)
                            if self.now <= r[0] < until])
            self.set_clock(later)
        return self.wd.snakemake("--cores", "2", *targets, "--config", f"now={self.now.isoformat()}", check=check)

    # what the services hold
    def pinned(self) -> set[str]:
        return {f["cid"] for f in self.pinata.files.values()}

    def kv_values(self) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self.kv.store.items()}

    def kv_roots(self) -> set[str]:
        return {root_of(v["ipfs_url"]) for v in self.kv_values().values()}

    def live(self) -> set[str]:
        """What must stay pinned: what KV points to, and every chart's current version (its receipt)."""
        return self.kv_roots() | {r["root_cid"] for r in self.wd.receipts().values()}

    def record(self, which: str = "recent") -> dict:
        return json.loads((self.wd.path / f"results/kv/{which}.json").read_text())

    def writes_on(self, utc_day: str) -> int:
        return self.kv.usage(utc_day)["writes"]


@pytest.fixture
def services():
    with PinataDouble(jwt=JWT) as pinata, KVDouble(token=CF_TOKEN, account="acct123", namespace="ns456") as kv:
        yield pinata, kv


def test_a_day_of_cron_in_miniature_keeps_pins_live_and_kv_within_budget(sqlite_db, services, tmp_path):
    """Runs every 15 minutes across an hour change, a local midnight (here UTC: the day leaves the window and is
    packed into a folder) and a UTC midnight (a new budget), with readings arriving all the time. The budget
    is a steady day's need (2 sensors: 52 hourly, daily and heatmap keys, 52 keys repointed into the packed
    folder, and the hourly reserve of the 6 latest pointers) with a little to spare."""
    BUDGET = 300
    pinata, kv = services
    start = utc(2025, 1, 14, 22, 50)
    sqlite_db.insert([r for r in minute_readings(date(2025, 1, 14), date(2025, 1, 14), UTC_ZONE) if r[0] < start])
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="UTC", lookback_days=0, now=start.isoformat(),
                     publish={"kv_writes_per_day": BUDGET, "grace_minutes": 10})
    dep.run("latest")
    previous_extra: set[str] = set()
    latest_refreshes = 0
    for step in range(9):
        dep.run("latest", minutes=15, readings_until=utc(2025, 1, 15, 0, 35))
        pinned, live = dep.pinned(), dep.live()
        assert dep.kv_roots() <= pinned, "a KV key points to a deleted pin"
        extra = pinned - live
        assert not extra & previous_extra, "a superseded pin outlived its grace period"
        previous_extra = extra
        for utc_day in ("2025-01-14", "2025-01-15"):
            assert dep.writes_on(utc_day) <= BUDGET
        record = dep.record()
        latest_refreshes += bool(record["written"]["latest"])
        assert record["budget"]["writes_today"] == dep.writes_on(dep.now.date().isoformat())

    assert pinned == live, "after the grace period, the pins are exactly the live charts"
    # Yesterday left the window at midnight: one folder holds all its charts, and its dated keys point there.
    folders = [f for f in pinata.files.values() if f["number_of_files"] > 1]
    assert len(folders) == 1
    yesterday = {k: v for k, v in dep.kv_values().items() if ":2025-01-14" in k}
    assert len(yesterday) == DATED_PER_DAY
    assert {root_of(v["ipfs_url"]) for v in yesterday.values()} == {folders[0]["cid"]}
    assert not [p for p in dep.wd.files("results/receipts/*/2025-01-14.json") if "/folder/" not in str(p)]
    # Today's finished hour has its dated key; the latest pointers were refreshed, but not on every run.
    assert "temperature:hourly:2025-01-15T00" in kv.store
    assert 2 <= latest_refreshes < 9
    assert json.loads(kv.store["temperature:daily:latest"])["metadata"]["start_time"].startswith("2025-01-15")
    # Every individually uploaded version of yesterday is gone from Pinata.
    assert all(f["number_of_files"] > 1 or not f["name"].count("2025-01-14") for f in pinata.files.values())


def test_a_backfill_over_the_budget_finishes_indexing_over_the_following_days(sqlite_db, services, tmp_path):
    pinata, kv = services
    sqlite_db.insert(minute_readings(date(2025, 1, 10), date(2025, 1, 12), LA))
    now = utc(2025, 2, 1, 12, 0)
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="America/Los_Angeles", start="2025-01-10",
                     end="2025-01-12", now=now.isoformat(), publish={"kv_writes_per_day": 100})
    first = dep.run()
    assert len(pinata.uploads) == 3  # one folder per day
    record = dep.record("range")
    waiting = record["deferred"]["dated"]
    assert waiting > 0 and dep.writes_on("2025-02-01") <= 100
    assert re.search(r"\d+ dated KV key\(s\) wait for the daily budget", first.output)  # the run says so
    # ... and that a cron at this budget could not keep up: 52 dated keys a sensor a day, and the pointers'
    # reserve of 25 writes spends 4 refreshes of 6.
    budget = record["budget"]
    dated = 52 * len(SENSORS)
    assert (budget["dated_keys_per_day"], budget["latest_writes_per_day"]) == (dated, 24)
    assert budget["catch_up_per_day"] == 100 - dated - 24 < 0
    assert "is too small for a cron of 2 sensor(s)" in first.output
    assert f"about {dated + 24 - 100} dated keys a day fall further behind" in first.output
    assert all(f"{s}:{i}:latest" in kv.store for s in SENSORS for i in ("daily", "hourly", "cumulative"))
    for day in range(2, 6):
        dep.set_clock(now + timedelta(days=day - 1))
        dep.run()
        assert dep.writes_on(dep.now.date().isoformat()) <= 100
        if dep.record("range")["deferred"]["dated"] == 0:
            break
    dated = {k for k in kv.store if not k.endswith(":latest")}
    assert len(dated) == 3 * DATED_PER_DAY  # none dropped
    assert day <= 4  # three or four days of this budget
    assert "Nothing to be done" in dep.wd.snakemake("-n", "--config", f"now={dep.now.isoformat()}").output


@pytest.mark.parametrize("status", [429, 400])
def test_cloudflare_10048_ends_the_index_job_in_one_sentence_and_loses_nothing(sqlite_db, services, tmp_path,
                                                                               status):
    pinata, kv = services
    kv.writes_per_day, kv.limit_status = 1000, status
    sqlite_db.insert(minute_readings(date(2025, 1, 14), date(2025, 1, 15), LA))
    now = utc(2025, 2, 1, 12, 0)
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="America/Los_Angeles", start="2025-01-14",
                     end="2025-01-15", now=now.isoformat())
    # Another application of the account has spent most of today's writes.
    other = requests.put(f"{kv.url}/accounts/{kv.account}/storage/kv/namespaces/{kv.namespace}/bulk",
                         json=[{"key": f"other:{i}", "value": "x"} for i in range(950)],
                         headers={"Authorization": f"Bearer {CF_TOKEN}"}, timeout=30)
    assert other.json()["result"]["successful_key_count"] == 950
    run = dep.run(check=False)
    assert run.returncode != 0
    sentence = re.search(r"publish_range: (Cloudflare KV refused writes with error 10048: [^\n]*)", run.output)
    assert sentence and "daily write limit is used up until 00:00 UTC" in sentence[1]
    assert f"{2 * DATED_PER_DAY} dated key(s)" in sentence[1] and "later runs write them" in sentence[1]
    assert not [k for k in kv.store if not k.startswith("other:")]
    dep.set_clock(now + timedelta(minutes=20))
    again = dep.run()  # the same UTC day: nothing is tried, nothing fails, nothing is lost
    assert again.returncode == 0 and not [k for k in kv.store if not k.startswith("other:")]
    assert dep.record("range")["budget"]["cloudflare_limit_reached"] is True
    dep.set_clock(now + timedelta(days=1))
    dep.run()
    assert len([k for k in kv.store if ":2025-01-1" in k]) == 2 * DATED_PER_DAY
    assert all(f"{s}:{i}:latest" in kv.store for s in SENSORS for i in ("daily", "hourly", "cumulative"))


def test_a_failed_delete_is_retried_by_a_later_run(sqlite_db, services, tmp_path):
    pinata, kv = services
    now = utc(2025, 1, 15, 20, 0)
    sqlite_db.insert([r for r in minute_readings(date(2025, 1, 15), date(2025, 1, 15), LA) if r[0] < now])
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="America/Los_Angeles", start="2025-01-15",
                     end="2025-01-15", now=now.isoformat(), publish={"kv_writes_per_day": None})
    dep.run("latest")
    sqlite_db.insert([(utc(2025, 1, 15, 19, 30, 30), "temperature", 55.0, "station-1")])  # a late reading, 11:30
    dep.set_clock(now + timedelta(minutes=15))
    dep.run("latest")
    superseded = dep.pinned() - dep.live()
    assert superseded  # the old T11, daily and heatmap charts, in their grace period
    pinata.inject("500", "500", "500", "500", endpoint="delete")  # every attempt of the first delete fails
    dep.set_clock(now + timedelta(minutes=30))
    dep.run("latest")
    failures = dep.record()["delete_failures"]
    assert len(failures) == 1 and failures[0]["root"] in dep.pinned()
    assert dep.kv_roots() <= dep.pinned()
    dep.set_clock(now + timedelta(minutes=45))
    dep.run("latest")  # the schedule made the index job run again without new charts
    assert dep.pinned() == dep.live() and not dep.pinned() & superseded
    assert {u["cid"] for u in pinata.uploads if u["id"] in pinata.deleted} >= superseded


def test_late_rows_for_a_packed_day_make_a_new_folder_and_retire_the_old(sqlite_db, services, tmp_path):
    pinata, kv = services
    sqlite_db.insert(minute_readings(date(2025, 1, 14), date(2025, 1, 15), LA))
    now = utc(2025, 2, 1, 12, 0)
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="America/Los_Angeles", start="2025-01-14",
                     end="2025-01-15", now=now.isoformat())
    dep.run()
    old = json.loads((dep.wd.path / "results/receipts/folder/2025-01-14.json").read_text())
    old_root = next(iter(old.values()))["root_cid"]
    sqlite_db.insert([(utc(2025, 1, 14, 20, 0, 30), "humidity", 12.5, "station-1")])
    dep.set_clock(now + timedelta(minutes=5))
    run = dep.run()
    assert run.jobs()["upload_folder_ordinary"] == 1 and len(pinata.uploads) == 3
    new_root = root_of(kv.store and json.loads(kv.store["humidity:hourly:2025-01-14T12"])["ipfs_url"])
    assert new_root != old_root
    assert {root_of(v["ipfs_url"]) for k, v in dep.kv_values().items() if ":2025-01-14" in k} == {new_root}
    assert old_root in dep.pinned()  # within its grace period
    dep.set_clock(now + timedelta(minutes=20))
    dep.run()
    assert old_root not in dep.pinned() and dep.pinned() == dep.live() and len(dep.pinned()) == 2


def test_keep_days_retires_old_days_from_pinata_and_kv(sqlite_db, services, tmp_path):
    pinata, kv = services
    sqlite_db.insert(minute_readings(date(2025, 1, 13), date(2025, 1, 16), LA))
    now = utc(2025, 1, 15, 20, 0)
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="America/Los_Angeles", start="2025-01-13",
                     end="2025-01-15", lookback_days=0, now=now.isoformat(),
                     publish={"keep_days": 2, "kv_writes_per_day": None})
    dep.run()
    assert any(":2025-01-13" in k for k in kv.store)
    dep.set_clock(now + timedelta(days=1))  # today is the 16th: the 13th is older than 2 days
    dep.run()
    assert not [k for k in kv.store if ":2025-01-13" in k]
    assert dep.kv.usage()["deletes"] == DATED_PER_DAY
    dep.set_clock(now + timedelta(days=1, minutes=15))
    dep.run()
    days = sorted(f["name"] for f in pinata.files.values())
    assert not [d for d in days if "2025-01-13" in d] and dep.pinned() == dep.live()


def test_each_run_leaves_prometheus_counters_that_match_the_services(sqlite_db, services, tmp_path):
    pinata, kv = services
    now = utc(2025, 1, 15, 20, 0)
    sqlite_db.insert([r for r in minute_readings(date(2025, 1, 14), date(2025, 1, 15), LA) if r[0] < now])
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="America/Los_Angeles", start="2025-01-14",
                     end="2025-01-15", now=now.isoformat())
    dep.run()
    text = (dep.wd.path / "results/metrics/sensor_charts.prom").read_text()
    values = dict(re.findall(r"^(sensor_charts_\w+) (\S+)$", text, re.M))
    assert int(values["sensor_charts_pinata_uploads_total"]) == len(pinata.uploads)
    assert int(values["sensor_charts_pinned_files"]) == pinata.pin_count
    assert int(values["sensor_charts_kv_writes_today"]) == kv.usage("2025-01-15")["writes"]
    assert int(values["sensor_charts_kv_write_budget"]) == 1000
    assert int(values["sensor_charts_kv_writes_left_today"]) == 1000 - kv.usage("2025-01-15")["writes"]
    assert float(values["sensor_charts_last_publish_timestamp_seconds"]) == now.timestamp()
    assert "# TYPE sensor_charts_pinata_uploads_total counter" in text
    run_metrics = (dep.wd.path / "results/metrics/sensor_charts_run.prom").read_text()
    assert re.search(r"^sensor_charts_last_successful_run_timestamp_seconds \d", run_metrics, re.M)


def test_a_deployment_near_pinatas_file_limit_is_told_the_keep_days_that_holds_and_it_does(sqlite_db, services,
                                                                                           tmp_path):
    """Six finished days as folders and a cron near the end of the seventh, against a Pinata double that refuses
    uploads past its file limit. 2 sensors and no look-back day: the window pins at most 72 charts and versions
    at its fullest and 12 superseded ones wait out their grace, so with 88 files the run says the limit is
    reached and that keep_days 3 holds; with that set, the cron crosses local midnight (the day leaves the
    window as a new folder, the oldest are retired) and Pinata never holds more than 88 at any moment."""
    LIMIT = 88
    pinata, kv = services
    pinata.file_limit = LIMIT
    start = utc(2025, 1, 14, 22, 50)
    sqlite_db.insert([r for r in minute_readings(date(2025, 1, 8), date(2025, 1, 14), UTC_ZONE) if r[0] < start])
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="UTC", lookback_days=0, start="2025-01-08",
                     end="2025-01-14", now=start.isoformat(),
                     publish={"pinata_files": LIMIT, "kv_writes_per_day": None})
    first = dep.run()
    quota = dep.record("range")["pinata"]
    assert (quota["pinned"], quota["folders"]) == (pinata.pin_count, 6)
    assert (quota["peak"], quota["full_in_days"], quota["keep_days_that_fit"]) == (6 + 1 + 84, 0, 3)
    assert "at or over publish.pinata_files 88" in first.output
    assert "set publish.keep_days to at most 3 " in first.output
    text = (dep.wd.path / "results/metrics/sensor_charts.prom").read_text()
    assert re.search(r"^sensor_charts_pinata_file_limit 88$", text, re.M)
    assert re.search(r"^sensor_charts_pinata_full_in_days 0$", text, re.M)

    config_file = dep.wd.path / "config/config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["publish"]["keep_days"] = 3
    config_file.write_text(yaml.safe_dump(config))
    for _ in range(7):  # 23:05 to 00:35, readings arriving up to 00:30
        run = dep.run("latest", minutes=15, readings_until=utc(2025, 1, 15, 0, 30))
        assert "pinata_files" not in run.output
        assert dep.record()["pinata"]["full_in_days"] is None
    # Held under the limit, and not by much: without a KV budget the pointers move every run (their 6 earlier
    # targets are not kept), 15-minute steps hold one run's superseded versions, not two (6 fewer), and no
    # clock goes back (2 fewer).
    assert LIMIT - 20 <= pinata.pinned_most <= LIMIT
    folders = sorted(re.search(r"\d{4}-\d\d-\d\d", f["name"])[0] for f in pinata.files.values()
                     if f["number_of_files"] > 1)
    assert folders == ["2025-01-12", "2025-01-13", "2025-01-14"]
    assert dep.kv_roots() <= dep.pinned(), "a KV key points to a deleted pin"


def test_a_cron_every_minute_is_charged_the_versions_its_own_runs_supersede(sqlite_db, services, tmp_path):
    """The estimate assumes a cron every 5 minutes (two runs' superseded versions in a 10-minute grace period)
    unless the deployment's runs say otherwise. A cron every minute late in a day: a run supersedes each
    sensor's current hour, daily and heatmap chart, and the versions of ten runs wait out the grace period, more
    than the 5-minute estimate allows for; the runs' own times bring the estimate above what Pinata held."""
    pinata, kv = services
    start = utc(2025, 1, 14, 23, 20)
    sqlite_db.insert([r for r in minute_readings(date(2025, 1, 14), date(2025, 1, 14), UTC_ZONE) if r[0] < start])
    dep = Deployment(tmp_path, sqlite_db, pinata, kv, timezone="UTC", lookback_days=0, now=start.isoformat(),
                     publish={"kv_writes_per_day": None, "grace_minutes": 10})
    dep.run("latest")
    for _ in range(13):
        dep.run("latest", minutes=1)
    quota = dep.record()["pinata"]
    # 26 charts a sensor, a fall-back hour, and 3 of each: the new day's first, the pointers' earlier targets, a
    # run's uploads, and the superseded versions of each run in the grace period (2 assumed, 10 measured)
    assumed = PinQuota(500, len(SENSORS), 0, None, 10, pinned=1, folders=0)
    assert assumed.window == len(SENSORS) * (26 + 1 + 3 * (3 + 2)) == 84
    assert quota["runs_in_grace"] == 10
    assert quota["cron_window"] == len(SENSORS) * (26 + 1 + 3 * (3 + 10)) == 132
    assert assumed.peak < pinata.pinned_most <= quota["peak"]
    assert dep.kv_roots() <= dep.pinned(), "a KV key points to a deleted pin"
