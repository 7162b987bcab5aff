"""Publishing that lasts, measured against the local doubles of Pinata and Cloudflare KV (tests/doubles.py),
which count what the providers bill: pinned files (a folder is one), upload and delete requests, KV writes
per UTC day.

    tools/with-env python bench/publishing.py [--quick]      # alone; bench/run.py runs it too

Two scenarios on synthetic readings (3 sensors, one a minute, America/Los_Angeles), with the workflow's
defaults (kv_writes_per_day 1,000, grace 10 minutes, lookback_days 2):

  cron      ``snakemake latest`` every 5 minutes of a simulated clock (``--config now=…``, the doubles'
            clocks in step) over 2 hours [20 minutes] from 23:00 local: an hour change and a local midnight
            (a day leaves the window and is packed into a folder). Readings arrive every step. The first
            run (the deployment publishing its whole window) is not counted. Then two runs 15 minutes apart
            with nothing new (pointers settle, grace periods end), and pins are compared with what KV and
            the receipts refer to. KV writes are projected to a day: the writes that recur x 24 h / the
            period, plus those that happen once a day (daily and heatmap keys, the packed day's keys)
  backfill  ``snakemake`` of 30 [3] finished days with ``upload.requests_per_minute`` 60 (the free plan):
            upload requests, and the time the upload phase takes at that rate

    tools/with-env python bench/publishing.py --day [--sensors N]   # a whole UTC day instead (~25 min)

  day       the cron of a deployment made the evening before, run every 5 minutes through one whole UTC day
            (288 runs, a local midnight among them) against a KV double that enforces the free plan's daily
            limits: the writes that day actually counted, how often and how far apart the latest pointers
            moved, the dated keys still waiting at its end, and pins vs what KV and the receipts refer to
            (after two quiet runs, as above). ``--sensors N`` charts N sensors instead of 3 (copies of the
            three, named ``temperature_2`` …); past 6, the free plan no longer refreshes every pointer hourly

Prints the figures and, as the last line, one JSON object. Nothing is asserted but correctness (the run
succeeds; the pins are exactly what KV and the receipts refer to).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import common  # noqa: E402
from common import TZ, copy_table, snakemake_env, synthetic_readings, write_config  # noqa: E402

JWT, CF_TOKEN = "bench-pinata-jwt", "bench-cf-token"
CRON_START = datetime(2025, 6, 10, 23, 0, tzinfo=TZ)  # 23:00 PDT: an hour change, then local midnight
BACKFILL_FIRST = date(2025, 5, 1)
DAY = date(2025, 6, 11)  # the whole UTC day of --day: 17:00 PDT on 10 June to 17:00 PDT on 11 June
RUNS_A_DAY = 288
PINATA_FREE_FILES = 500
FULL = dict(cron_minutes=120, backfill_days=30)
QUICK = dict(cron_minutes=20, backfill_days=3)  # the quiet runs end before local midnight


def run(wd: Path, url: str, env: dict, *args: str) -> float:
    import subprocess

    cmd = [common.SNAKEMAKE, "--snakefile", str(common.WORKFLOW / "Snakefile"), "--directory", str(wd),
           "--cores", "2", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**snakemake_env(url), **env}, cwd=wd)
    if proc.returncode:
        output = (proc.stdout + proc.stderr)[-4000:]
        sys.exit(f"snakemake {' '.join(args)} failed ({proc.returncode}) in {wd}:\n{output}")
    return time.perf_counter() - t0


def utc_readings(lo: datetime, hi: datetime):
    """Readings in ``[lo, hi)`` (aware datetimes; synthetic_readings wants UTC)."""
    return synthetic_readings(lo.astimezone(timezone.utc), hi.astimezone(timezone.utc))


def credentials(pinata, kv) -> dict:
    return {"PINATA_JWT": JWT, "PINATA_UPLOAD_URL": pinata.url, "PINATA_API_URL": pinata.api_url,
            "CLOUDFLARE_API_TOKEN": CF_TOKEN, "CLOUDFLARE_ACCOUNT_ID": kv.account, "KV_NAMESPACE_ID": kv.namespace,
            "CLOUDFLARE_API_URL": kv.url}


def root_of(url: str) -> str:
    return url.removeprefix("ipfs://").split("/", 1)[0]


def in_grace(wd: Path, roots: set[str], now: datetime, grace_minutes: int = 10) -> set[str]:
    """Those of ``roots`` that the deployment's ledger holds in their grace period at ``now`` (unreferenced
    for less than ``grace_minutes``): pinned by design, deleted by a later run."""
    import sqlite3

    con = sqlite3.connect(wd / "results/publish/ledger.sqlite")
    try:
        since = dict(con.execute("SELECT root, unreferenced_since FROM pins").fetchall())
    finally:
        con.close()
    return {r for r in roots if since.get(r) is not None and now.timestamp() - since[r] < grace_minutes * 60}


def live_and_pinned(wd: Path, pinata, kv) -> tuple[set[str], set[str]]:
    live = {root_of(json.loads(v)["ipfs_url"]) for v in kv.store.values()}
    for path in wd.glob("results/receipts/*/*.json"):
        live |= {r["root_cid"] for r in json.loads(path.read_text()).values()}
    return live, {f["cid"] for f in pinata.files.values()}


class Deployment:
    """A working directory publishing to the doubles, run at moments of a simulated clock."""

    def __init__(self, wd: Path, url: str, config: dict, pinata, kv) -> None:
        self.wd, self.url, self.config, self.pinata, self.kv = wd, url, config, pinata, kv

    def latest_at(self, now: datetime) -> float:
        """``snakemake latest`` with config ``now`` and both doubles' clocks at ``now``; its wall seconds."""
        self.pinata.clock = self.kv.clock = now.timestamp
        write_config(self.wd, **dict(self.config, now=now.isoformat()))
        return run(self.wd, self.url, credentials(self.pinata, self.kv), "latest")

    def settle(self, now: datetime) -> datetime:
        """Two runs 15 minutes apart with nothing new: the latest pointers settle, the grace periods end."""
        for _ in range(2):
            now += timedelta(minutes=15)
            self.latest_at(now)
        return now


def cron(url: str, wd: Path, minutes: int) -> dict:
    """A 5-minute cron over ``minutes`` of simulated time; KV writes projected to a day, pins vs live."""
    from doubles import KVDouble, PinataDouble

    config = dict(start=None, end=None, upload={"requests_per_minute": 6000})
    with PinataDouble(jwt=JWT) as pinata, KVDouble(token=CF_TOKEN) as kv:
        deployment = Deployment(wd, url, config, pinata, kv)
        first = CRON_START.date() - timedelta(days=32)
        copy_table(url, utc_readings(datetime(first.year, first.month, first.day, tzinfo=TZ), CRON_START))
        now, seconds, daily_events = CRON_START, [], 0
        utc_days = set()

        def writes() -> int:
            return sum(kv.usage(d)["writes"] for d in utc_days)

        for step in range(minutes // 5 + 1):
            if step:
                later = now + timedelta(minutes=5)
                copy_table(url, utc_readings(now, later))
                now = later
            utc_days.add(now.astimezone(timezone.utc).date().isoformat())
            seconds.append(deployment.latest_at(now))
            if not step:  # the deployment's first run publishes the whole window: not a steady run
                first_run = (writes(), len(pinata.uploads), len(pinata.deleted))
                continue
            record = json.loads((wd / "results/kv/recent.json").read_text())
            if record["at"] != now.astimezone(timezone.utc).isoformat(timespec="seconds"):
                continue  # the index job did not run in this step
            for key, doc in record["documents"].items():
                in_folder = "/" in doc["ipfs_url"].removeprefix("ipfs://")
                if not key.endswith(":latest") and (key.split(":")[1] != "hourly" or in_folder):
                    daily_events += 1  # daily and heatmap keys, and the packed day's keys: once a day
        steady = writes() - first_run[0]
        uploads, deletes = len(pinata.uploads) - first_run[1], len(pinata.deleted) - first_run[2]
        deployment.settle(now)
        live, pinned = live_and_pinned(wd, pinata, kv)
        return {
            "cron_runs": len(seconds) - 1, "cron_minutes": minutes, "cron_run_median_s": statistics.median(seconds[1:]),
            "cron_kv_writes": steady, "cron_kv_writes_once_a_day": daily_events,
            "kv_writes_per_day_projected": round((steady - daily_events) * 24 * 60 / minutes + daily_events),
            "cron_pinata_uploads": uploads, "cron_pinata_deletes": deletes,
            "pinned_after_cron": len(pinned), "live_after_cron": len(live),
            "pinned_to_live": len(pinned) / max(1, len(live)), "pinned_equals_live": pinned == live,
        }


def latest_pointers(kv) -> dict[str, str]:
    return {k: json.loads(v)["ipfs_url"] for k, v in kv.store.items() if k.endswith(":latest")}


def sensor_copies(names: list[str], n: int) -> dict[str, str]:
    """``n`` sensor names, each mapped to the one of ``names`` it copies: those names first, then
    ``{name}_2``, ``{name}_3`` …"""
    return {(name if i < len(names) else f"{name}_{i // len(names) + 1}"): name
            for i, name in ((i, names[i % len(names)]) for i in range(n))}


def readings_of(copies: dict[str, str], lo: datetime, hi: datetime):
    """Readings in ``[lo, hi)`` of each sensor of ``copies``, which reads as the sensor it copies."""
    import pyarrow as pa
    import pyarrow.compute as pc

    base = utc_readings(lo, hi)
    return pa.concat_tables(
        [(rows := base.filter(pc.equal(base["sensor_type"], source)))
         .set_column(1, "sensor_type", pa.array([name] * rows.num_rows)) for name, source in copies.items()])


def whole_day(url: str, wd: Path, sensors: int = 3) -> dict:
    """``latest`` every 5 minutes through the UTC day ``DAY``, deployed 5 minutes before it began."""
    import yaml

    from doubles import KVDouble, PinataDouble

    midnight = datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc)
    now = midnight - timedelta(minutes=5)
    configured = yaml.safe_load((common.WORKFLOW / "config/config.yaml").read_text())["sensors"]
    copies = sensor_copies(list(configured), sensors)
    config = dict(start=None, end=None, upload={"requests_per_minute": 6000},
                  sensors={name: configured[source] for name, source in copies.items()})
    free_plan = dict(writes_per_day=1000, deletes_per_day=1000, lists_per_day=1000, reads_per_day=100_000)
    # The window's charts are pinned one by one (26 a sensor and day): past 5 sensors they alone are more
    # than the free plan's 500 files, so such a network needs a paid Pinata plan (no file limit here).
    file_limit = PINATA_FREE_FILES if sensors <= 5 else None
    # The run's estimate of its fullest hour (results/kv/recent.json, "pinata") is compared with the double's.
    config["publish"] = {"pinata_files": file_limit or 100_000}
    with PinataDouble(jwt=JWT, file_limit=file_limit) as pinata, KVDouble(token=CF_TOKEN, **free_plan) as kv:
        deployment = Deployment(wd, url, config, pinata, kv)
        first = now.astimezone(TZ).date() - timedelta(days=32)
        copy_table(url, readings_of(copies, datetime(first.year, first.month, first.day, tzinfo=TZ), now))
        deployment.latest_at(now)  # the deployment's run: not counted
        deployed = (len(pinata.uploads), len(pinata.deleted))
        seconds, moves, pins, estimates = [], [], [], []
        for _ in range(RUNS_A_DAY):  # 00:00 to 23:55 UTC
            copy_table(url, readings_of(copies, now, now + timedelta(minutes=5)))
            now += timedelta(minutes=5)
            before = latest_pointers(kv)
            seconds.append(deployment.latest_at(now))
            if latest_pointers(kv) != before:
                moves.append(now)
            pins.append(len(pinata.files))
            estimates.append(json.loads((wd / "results/kv/recent.json").read_text())["pinata"]["peak"])
        gaps = [(b - a).total_seconds() / 60 for a, b in zip([midnight, *moves], [*moves, now])]
        waiting = json.loads((wd / "results/kv/recent.json").read_text())["deferred"].get("dated", 0)
        uploads, deletes = len(pinata.uploads) - deployed[0], len(pinata.deleted) - deployed[1]
        now = deployment.settle(now)
        live, pinned = live_and_pinned(wd, pinata, kv)
        grace = in_grace(wd, pinned - live, now)
        usage = kv.usage(DAY.isoformat())
        return {
            "day_sensors": sensors, "day_runs": len(seconds), "day_run_median_s": statistics.median(seconds),
            "day_kv_writes": usage["writes"], "day_kv_dated_waiting_end": waiting, "day_kv_deletes": usage["deletes"],
            "day_kv_lists": usage["lists"],
            "day_latest_moves": len(moves), "day_latest_longest_wait_min": max(gaps),
            "day_pinata_uploads": uploads, "day_pinata_deletes": deletes,
            "day_pinned_most": max(pins), "day_pinned_end": len(pinned), "day_pinned_equals_live": pinned == live,
            "day_pinned_most_mid_run": pinata.pinned_most, "day_pinned_peak_estimated": max(estimates),
            "day_live_not_pinned": len(live - pinned), "day_pinned_in_grace": len(grace),
            "day_pinned_not_live_past_grace": len(pinned - live - grace),
            "day_pinned_most_over_estimate": pinata.pinned_most - max(estimates),
        }


def backfill(url: str, wd: Path, days: int) -> dict:
    """``days`` finished days uploaded at the free plan's 60 requests a minute."""
    from doubles import KVDouble, PinataDouble

    last = BACKFILL_FIRST + timedelta(days=days - 1)
    lo = datetime(BACKFILL_FIRST.year, BACKFILL_FIRST.month, BACKFILL_FIRST.day, tzinfo=TZ) - timedelta(days=30)
    hi = datetime(last.year, last.month, last.day, tzinfo=TZ) + timedelta(days=1)
    copy_table(url, utc_readings(lo, hi))
    with PinataDouble(jwt=JWT) as pinata, KVDouble(token=CF_TOKEN) as kv:
        pinata.clock = kv.clock = common.NOW.timestamp
        write_config(wd, start=BACKFILL_FIRST.isoformat(), end=last.isoformat(), now=common.NOW.isoformat(),
                     upload={"requests_per_minute": 60})
        wall = run(wd, url, credentials(pinata, kv))
        uploads = [r for r in pinata.requests if r["method"] == "POST" and r["path"] == "/v3/files"]
        upload_log = sorted(wd.glob("logs/upload_folder/*.log"))
        folders = [f for f in pinata.files.values() if f["number_of_files"] > 1]
        charts = sum(f["number_of_files"] for f in folders)
        return {
            "backfill_days": days, "backfill_charts": charts, "backfill_upload_requests": len(uploads),
            "backfill_upload_minutes_at_60_per_minute": len(uploads) / 60, "backfill_wall_s": round(wall, 1),
            "backfill_pinned_files": len(pinata.files), "backfill_kv_writes": kv.usage()["writes"],
            "pinata_files_per_finished_day": len(folders) / days,
            "pinata_files_year_of_finished_days": round(365 * len(folders) / days),
            "upload_logs": len(upload_log),
        }


def measure(admin_url: str, root: Path, quick: bool) -> dict:
    from common import scratch_database

    p = QUICK if quick else FULL
    with scratch_database(admin_url, "bench_publish_cron") as url:
        figures = cron(url, root / "publish_cron", p["cron_minutes"])
    with scratch_database(admin_url, "bench_publish_backfill") as url:
        figures.update(backfill(url, root / "publish_backfill", p["backfill_days"]))
    return figures


FIGURES = ("kv_writes_per_day_projected", "cron_kv_writes", "cron_minutes", "pinned_to_live",
           "cron_pinata_uploads", "cron_pinata_deletes", "backfill_upload_requests",
           "backfill_upload_minutes_at_60_per_minute", "pinata_files_year_of_finished_days")
TARGETS = {"kv_writes_per_day_projected": ("<=", 1000), "pinned_to_live": ("<=", 1.0),
           "backfill_upload_requests": ("<=", 60), "backfill_upload_minutes_at_60_per_minute": ("<=", 2.0),
           "pinata_files_year_of_finished_days": ("<=", 400)}


def day_targets(sensors: int) -> dict:
    """Up to 6 sensors the pointers are refreshed at least hourly; past that they get what the dated keys
    leave (docs/publishing.md), which no fixed figure bounds. The dated keys never pile up: at most the last
    hour's (one a sensor) and, on a slow run, the one before wait at the end of the day. Every root KV or a
    receipt names is pinned, and every other pin is in its grace period (a pointer refreshed by the last
    quiet run leaves its old target there). The runs' estimate of Pinata's fullest hour (pinquota.py) is never
    below what the double held at any moment."""
    targets = {"day_kv_writes": ("<=", 1000), "day_kv_dated_waiting_end": ("<=", 2 * sensors),
               "day_live_not_pinned": ("==", 0), "day_pinned_not_live_past_grace": ("==", 0),
               "day_pinned_most_over_estimate": ("<=", 0)}
    if sensors <= 6:
        targets["day_latest_longest_wait_min"] = ("<=", 60)
    return targets


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--day", action="store_true", help="a whole UTC day of 5-minute cron runs instead")
    ap.add_argument("--sensors", type=int, default=3, help="sensors charted in --day (default 3)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-publishing-") as tmp:
        root = Path(tmp)
        common.snapshot_workflow(root / "workflow-snapshot")
        with common.private_runtime(root / "xdg"), common.postgres_server(root) as admin_url:
            if args.day:
                with common.scratch_database(admin_url, "bench_publish_day") as url:
                    figures = whole_day(url, root / "publish_day", args.sensors)
            else:
                figures = measure(admin_url, root, args.quick)
    for key, (op, bound) in (day_targets(args.sensors) if args.day else TARGETS).items():
        value = figures[key]
        met = {"<=": value <= bound, ">=": value >= bound, "==": value == bound}[op]
        print(f"{key:45s} {value!s:>10}   target {op} {bound}   {'met' if met else 'MISSED'}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
