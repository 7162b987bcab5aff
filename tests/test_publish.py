"""Publishing against local doubles of Pinata and Cloudflare KV that follow the providers' documentation:
run by run (what is uploaded, what KV holds, faults, secrets). Publishing over days and weeks (budgets,
deletes, folders of finished days, retention) is in test_publish_lasting.py."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import date, timedelta

import pytest
import requests
from conftest import utc

from doubles import KVDouble, PinataDouble
from sensorcharts.timegrid import zone
from test_workflow import minute_readings
from workflow_runner import Workdir

LA = zone("America/Los_Angeles")
SENSORS = {"temperature": {"display_name": "Temperature", "unit": "°C"},
           "humidity": {"display_name": "Humidity", "unit": "%"}}
JWT = "pinata-jwt-Zq8x-SECRET-7731"
CF_TOKEN = "cf-token-Hh2k-SECRET-5519"
FAST_RETRIES = {"max_attempts": 4, "backoff_seconds": 0.05, "max_backoff_seconds": 0.2, "timeout_seconds": 2,
                "requests_per_minute": 6000}
KV_FIELDS = {"filename", "sensor_type", "interval", "data_points", "processing_time", "start_time", "end_time"}
CHARTS_PER_DAY = len(SENSORS) * (1 + 24 + 1)
# 12:00 PST on 2025-01-15: with 2 look-back days, the 13th to the 15th are in the cron window.
TODAY_NOON = utc(2025, 1, 15, 20, 0)


def raw_cid(data_sha256_hex: str) -> str:
    """CIDv1 (raw leaf) of a single-chunk file from its sha256, computed independently of the project."""
    digest = bytes([0x01, 0x55, 0x12, 0x20]) + bytes.fromhex(data_sha256_hex)
    return "b" + base64.b32encode(digest).decode().lower().rstrip("=")


@pytest.fixture
def services():
    with PinataDouble(jwt=JWT) as pinata, KVDouble(token=CF_TOKEN, account="acct123", namespace="ns456") as kv:
        yield pinata, kv


def credentials(pinata, kv, **extra) -> dict:
    return {"PINATA_JWT": JWT, "PINATA_UPLOAD_URL": pinata.url, "PINATA_API_URL": pinata.api_url,
            "CLOUDFLARE_API_TOKEN": CF_TOKEN, "CLOUDFLARE_ACCOUNT_ID": kv.account, "KV_NAMESPACE_ID": kv.namespace,
            "CLOUDFLARE_API_URL": kv.url, **extra}


def workdir(tmp_path, db, env, **overrides) -> Workdir:
    settings = dict(start="2025-01-14", end="2025-01-15", cumulative_days=1, now="2025-02-01T00:00:00+00:00",
                    sensors=SENSORS, upload=FAST_RETRIES)
    settings.update(overrides)
    return Workdir(tmp_path / "wd", db.url, env=env, **settings)


@pytest.fixture
def readings(sqlite_db):
    sqlite_db.insert(minute_readings(date(2025, 1, 10), date(2025, 1, 15), LA))
    return sqlite_db


def root_of(url: str) -> str:
    return url.removeprefix("ipfs://").split("/", 1)[0]


def through_gateway(pinata, ipfs_url: str) -> bytes:
    """What an IPFS gateway answers for ``ipfs_url`` (the double's gateway serves what Pinata pins)."""
    response = requests.get(f"{pinata.gateway_url}/{ipfs_url.removeprefix('ipfs://')}", timeout=10)
    response.raise_for_status()
    return response.content


def test_finished_days_are_published_as_one_folder_each_and_indexed(readings, services, tmp_path):
    pinata, kv = services
    wd = workdir(tmp_path, readings, credentials(pinata, kv))
    wd.snakemake("--cores", "2")

    # One folder (one CAR upload) per finished day, and one receipts file per folder.
    assert [p.relative_to(wd.path).as_posix() for p in wd.files("results/receipts/*/*.json")] == [
        f"results/receipts/folder/{day}.json" for day in ("2025-01-14", "2025-01-15")]
    assert len(pinata.uploads) == 2 and len(pinata.files) == 2
    receipts = wd.receipts()
    assert len(receipts) == 2 * CHARTS_PER_DAY
    folders = {u["cid"]: u for u in pinata.uploads}
    for name, receipt in receipts.items():
        sensor, interval, stamp = name.split(":")
        path = f"{sensor}/{interval}/{stamp}.png"
        assert receipt["cid"] == raw_cid(receipt["sha256"])  # the chart's own CID, computed independently
        assert receipt["root_cid"] in folders and receipt["path"] == path
        assert receipt["ipfs_url"] == f"ipfs://{receipt['root_cid']}/{path}"
        assert receipt["uploaded"] is True and receipt["pinata_id"] == folders[receipt["root_cid"]]["id"]
        # What a gateway gives for the URL is the chart's bytes.
        data = through_gateway(pinata, receipt["ipfs_url"])
        assert len(data) == receipt["size"] and raw_cid(hashlib.sha256(data).hexdigest()) == receipt["cid"]
        value = json.loads(kv.store[name])  # the dated key, in the old service's layout
        assert set(value) == {"ipfs_url", "updated_at", "metadata"}
        assert value["ipfs_url"] == receipt["ipfs_url"] and value["updated_at"].isdigit()
        assert set(value["metadata"]) == KV_FIELDS and value["metadata"]["end_time"] == receipt["metadata"]["end_time"]
    assert {f["number_of_files"] for f in pinata.files.values()} == {CHARTS_PER_DAY}
    assert not wd.files("results/images/**/*.png"), "DELETE_LOCAL_FILES defaults to true"

    latest = {key: json.loads(v) for key, v in kv.store.items() if key.endswith(":latest")}
    assert set(latest) == {f"{s}:{i}:latest" for s in SENSORS for i in ("daily", "hourly", "cumulative")}
    assert latest["temperature:daily:latest"]["metadata"]["start_time"] == "2025-01-15T00:00:00-08:00"
    assert latest["humidity:hourly:latest"]["metadata"]["start_time"] == "2025-01-15T23:00:00-08:00"
    assert latest["temperature:daily:latest"] == json.loads(kv.store["temperature:daily:2025-01-15"])

    uploads, writes = len(pinata.uploads), len(kv.writes)
    assert "Nothing to be done" in wd.snakemake("--cores", "2").output  # charts deleted, receipts current
    assert (len(pinata.uploads), len(kv.writes)) == (uploads, writes)


def test_days_in_the_cron_window_are_uploaded_chart_by_chart(readings, services, tmp_path):
    pinata, kv = services
    wd = workdir(tmp_path, readings, credentials(pinata, kv), start="2025-01-12", end="2025-01-15",
                 now=TODAY_NOON.isoformat())
    wd.snakemake("--cores", "2")
    kinds = {p.relative_to(wd.path).as_posix() for p in wd.files("results/receipts/*/*.json")}
    window = ("2025-01-13", "2025-01-14", "2025-01-15")
    assert kinds == {"results/receipts/folder/2025-01-12.json"} | {
        f"results/receipts/{k}/{d}.json" for k in ("day", "cumulative") for d in window}
    singles = [f for f in pinata.files.values() if f["number_of_files"] == 1]
    today_hours = 13  # 00:00 to 12:00 have started
    assert len(singles) == 2 * CHARTS_PER_DAY + len(SENSORS) * (1 + today_hours + 1)
    receipts = wd.receipts()
    for name, receipt in receipts.items():
        if name.split(":")[2] >= "2025-01-13":
            assert receipt["ipfs_url"] == f"ipfs://{receipt['cid']}" == f"ipfs://{raw_cid(receipt['sha256'])}"
    # Finished periods have dated keys; today's daily chart and the current hour (in progress) do not yet.
    assert "temperature:hourly:2025-01-15T11" in kv.store
    assert "temperature:hourly:2025-01-15T12" not in kv.store and "temperature:daily:2025-01-15" not in kv.store
    latest = json.loads(kv.store["temperature:hourly:latest"])
    assert latest["metadata"]["start_time"] == "2025-01-15T12:00:00-08:00"


def test_backfill_never_moves_latest_backwards(readings, services, tmp_path):
    pinata, kv = services
    wd = workdir(tmp_path, readings, credentials(pinata, kv), start="2025-01-15", end="2025-01-15")
    wd.snakemake("--cores", "2")
    latest_before = {k: v for k, v in kv.store.items() if k.endswith(":latest")}

    wd.snakemake("--cores", "2", "--config", "start=2025-01-11", "end=2025-01-12")
    assert "temperature:daily:2025-01-11" in kv.store and "humidity:hourly:2025-01-12T23" in kv.store
    assert {k: v for k, v in kv.store.items() if k.endswith(":latest")} == latest_before

    # Another deployment (or results/ started afresh) knows nothing of the pointers: it reads them from KV.
    other = workdir(tmp_path / "other", readings, credentials(pinata, kv), start="2025-01-10", end="2025-01-10")
    other.snakemake("--cores", "2")
    assert {k: v for k, v in kv.store.items() if k.endswith(":latest")} == latest_before
    record = json.loads((other.path / "results/kv/range.json").read_text())
    assert record["latest_kept_because_newer"]["temperature:daily:latest"] == "2025-01-16T08:00:00+00:00"


def test_faults_are_retried_until_every_chart_is_uploaded_once(readings, services, tmp_path):
    pinata, kv = services
    pinata.inject("429:1", "500", "timeout", "drop", "503", "429")
    kv.inject("429:1", "502", "unsuccessful:temperature:daily:latest", "unsuccessful:humidity:hourly:2025-01-15T03")
    # One upload meets all six faults in a row: it needs its 7th attempt. In the window: chart by chart.
    wd = workdir(tmp_path, readings, credentials(pinata, kv), start="2025-01-15", end="2025-01-15",
                 now="2025-01-16T09:00:00+00:00", upload=dict(FAST_RETRIES, threads=1, max_attempts=7))
    wd.snakemake("--cores", "1")
    cids = [u["cid"] for u in pinata.uploads]
    assert len(cids) == len(set(cids)) == CHARTS_PER_DAY
    assert {r["status"] for r in pinata.requests} >= {429, 500, 503, 200}
    latest = json.loads(kv.store["temperature:daily:latest"])  # written on the retry of an unsuccessful key
    assert latest["metadata"]["start_time"] == "2025-01-15T00:00:00-08:00"
    assert "humidity:hourly:2025-01-15T03" in kv.store
    assert "Nothing to be done" in wd.snakemake("-n").output


def test_a_failed_run_loses_nothing_and_uploads_nothing_twice(readings, services, tmp_path):
    pinata, kv = services
    # Two 500s exhaust the 2 attempts of one upload: that job fails after uploading the other charts.
    pinata.inject("500", "500")
    wd = workdir(tmp_path, readings, credentials(pinata, kv), start="2025-01-15", end="2025-01-15",
                 now="2025-01-16T09:00:00+00:00", upload=dict(FAST_RETRIES, threads=1, max_attempts=2))
    failed = wd.snakemake("--cores", "1", check=False)
    assert failed.returncode != 0
    assert "uploads failed" in failed.output
    first = len(pinata.uploads)
    assert 0 < first < CHARTS_PER_DAY or first == CHARTS_PER_DAY - 1

    wd.snakemake("--cores", "1")
    cids = [u["cid"] for u in pinata.uploads]
    assert len(cids) == len(set(cids)) == CHARTS_PER_DAY  # each chart once, across both runs
    assert len(wd.receipts()) == CHARTS_PER_DAY


def test_todays_new_hour_is_uploaded_and_indexed_without_new_rows(sqlite_db, services, tmp_path):
    """Once uploaded, today's charts are deleted and one receipts file stands for all of them: a new hour
    (here with no rows yet) must still redo the day's charts and upload the new one."""
    pinata, kv = services
    now = TODAY_NOON
    sqlite_db.insert([r for r in minute_readings(date(2025, 1, 15), date(2025, 1, 15), LA) if r[0] < now])
    wd = workdir(tmp_path, sqlite_db, credentials(pinata, kv), start="2025-01-15", end="2025-01-15",
                 now=now.isoformat())
    wd.snakemake("--cores", "2")
    assert "temperature:hourly:2025-01-15T11" in kv.store and "temperature:hourly:2025-01-15T12" not in kv.store

    run = wd.snakemake("--cores", "2", "--config", f"now={(now + timedelta(minutes=75)).isoformat()}")
    jobs = run.jobs()
    assert "extract_day" not in jobs and jobs["render_day_today"] == jobs["upload_day_today"] == 1
    assert json.loads(kv.store["temperature:hourly:latest"])["metadata"]["start_time"] == "2025-01-15T13:00:00-08:00"
    assert "temperature:hourly:2025-01-15T12" in kv.store  # the hour that ended in between
    assert "temperature:hourly:2025-01-15T13" in wd.receipts() and not wd.files("results/images/**/*.png")


def test_rejected_token_fails_at_once_naming_the_variable(readings, services, tmp_path):
    pinata, kv = services
    wd = workdir(tmp_path, readings, credentials(pinata, kv, PINATA_JWT="wrong-token-SECRET-0001"),
                 start="2025-01-15", end="2025-01-15")
    run = wd.snakemake("--cores", "1", check=False)
    assert run.returncode != 0
    assert "set PINATA_JWT to a valid token" in run.output
    assert "wrong-token-SECRET-0001" not in run.output
    # A 401 is never retried, and a job stops at its first one (at most one upload job got to start).
    assert 1 <= len(pinata.requests) <= 2 and not pinata.uploads


def test_without_credentials_nothing_is_sent_and_the_chain_is_recorded(readings, services, tmp_path):
    pinata, kv = services
    wd = workdir(tmp_path, readings, {}, start="2025-01-15", end="2025-01-15")
    run = wd.snakemake("--cores", "2")
    assert run.output.count("Uploads are off") == 1
    assert not pinata.requests and not kv.requests
    receipts = wd.receipts().values()
    assert len(receipts) == CHARTS_PER_DAY and not any(r["uploaded"] for r in receipts)
    assert len({r["root_cid"] for r in receipts}) == 1  # the folder's CID, computed locally
    assert len(wd.files("results/images/*/*/*.png")) == CHARTS_PER_DAY  # kept: they were not uploaded
    record = json.loads((wd.path / "results/kv/range.json").read_text())
    assert record["written_to_kv"] is False
    assert len(record["documents"]) == CHARTS_PER_DAY + 6  # dated keys + latest per sensor and interval
    assert "Nothing to be done" in wd.snakemake("-n").output


def test_dry_run_never_calls_the_services(readings, services, tmp_path):
    pinata, kv = services
    wd = workdir(tmp_path, readings, credentials(pinata, kv), start="2025-01-15", end="2025-01-15")
    wd.snakemake("-n")
    assert not pinata.requests and not kv.requests


def test_secrets_never_reach_a_file_or_the_log(readings, services, tmp_path):
    pinata, kv = services
    wd = workdir(tmp_path, readings, credentials(pinata, kv), start="2025-01-14", end="2025-01-15",
                 now="2025-01-15T20:00:00+00:00")
    run = wd.snakemake("--cores", "2", "--printshellcmds", "--verbose")
    written = [p for p in wd.path.rglob("*") if p.is_file()]
    assert any(p.name == "ledger.sqlite" for p in written) and any(p.suffix == ".prom" for p in written)
    assert len(written) > CHARTS_PER_DAY
    for secret in (JWT, CF_TOKEN):
        assert secret not in run.output
        assert not [p for p in written if secret.encode() in p.read_bytes()]


def test_wrong_namespace_is_one_sentence_naming_the_variables(readings, services, tmp_path):
    pinata, kv = services
    wd = workdir(tmp_path, readings, credentials(pinata, kv, KV_NAMESPACE_ID="no-such-namespace"),
                 start="2025-01-15", end="2025-01-15")
    run = wd.snakemake("--cores", "2", check=False)
    assert run.returncode != 0
    assert "check CLOUDFLARE_ACCOUNT_ID and KV_NAMESPACE_ID" in run.output
    assert not kv.store and len(pinata.uploads) == 1  # the day's folder is uploaded: the next run only indexes
