"""Benchmark: does the cron target (`snakemake latest`) get slower as the history in the database grows?

For each history length H (days), a fresh PostgreSQL database holds H local days (America/Los_Angeles) of
one reading a minute for temperature, humidity and pressure, ending at a fixed `now`; a fresh working
directory charts start = first history day .. end = today. After one untimed-for-comparison `latest` run
(today + look-back days and their cumulative windows; NOT a full backfill, so results/ holds only the cron
window), it times, median of N repeats taken in turn with the other history's:
  no-op    `snakemake --cores 2 latest` with nothing new ("Nothing to be done" is asserted)
  update   one more hour of readings appended and config `now` advanced one hour, then `latest`
  query    sensorcharts.fingerprints.compute for the cron block alone (in this process)
For the longest H it then adds 10,000 dummy old-date images and 10,000 old readings partitions and times
the no-op again: `latest` should never stat files outside its window.

Usage: tools/with-env python bench/cron_history.py [--quick] [--no-old-files]
(bench/run.py runs the same measurement, through bench_histories, as part of the whole suite.)
Uses the PostgreSQL server DATABASE_URL names (scratch databases, dropped afterwards), else a throwaway
pgserver. The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402  (also puts the package and the test helpers on sys.path)
    NOW,
    TZ,
    copy_readings,
    postgres_server,
    scratch_database,
    snakemake,
    write_config,
)

from sensorcharts import settings  # noqa: E402
from sensorcharts.database import Source  # noqa: E402
from sensorcharts.fingerprints import compute  # noqa: E402


def add_old_files(wd: Path, n: int = 10_000) -> None:
    """n dummy daily images and n readings partitions dated 1990-01-01 onwards (outside any window)."""
    for i in range(n):
        d = (date(1990, 1, 1) + timedelta(days=i)).isoformat()
        (wd / "results/images/temperature/daily" / f"{d}.png").write_bytes(b"dummy")
        part = wd / "results/readings" / f"date={d}"
        part.mkdir(parents=True, exist_ok=True)
        (part / "data.parquet").write_bytes(b"dummy")


def bench_histories(admin_url: str, root: Path, histories: tuple[int, ...], repeats: int, old_files: bool,
                    extra: Callable[[str, date, date], dict] | None = None) -> list[dict]:
    """Load each history (days) into a scratch database of its own and time `latest` on it (see the module
    docstring); return one result per history, in the order given.

    The timed runs alternate between the histories (no-op of each, ``repeats`` times; then update of each),
    so that the machine's drift, which moves its speed by a quarter within minutes, falls on all of them
    alike instead of on their ratio. ``extra(url, first, today)``, when given, runs on the longest history
    before the databases are dropped; its dict joins that history's result.
    """
    with contextlib.ExitStack() as stack:
        runs = []
        for days in histories:
            runs.append(_History(stack.enter_context(scratch_database(admin_url, f"bench_cron_{days}d")), root, days))
            runs[-1].load_and_prepare()
        for _ in range(repeats):
            for r in runs:
                r.result["noop_runs"].append(r.noop())
        for r in runs:
            r.time_query(repeats)
        long_run = runs[histories.index(max(histories))]
        if old_files:  # latest must not look at files of days outside its window
            add_old_files(long_run.wd)
            long_run.result["noop_old_runs"] = [long_run.noop() for _ in range(repeats)]
        # Updates: hour i (starting at NOW + i h) arrives, and `now` moves to the end of it.
        for i in range(repeats):
            for r in runs:
                r.update(i)
        if extra is not None:
            long_run.result.update(extra(long_run.url, long_run.first, long_run.today))
    results = []
    for r in runs:
        assert all(j == r.result["update_jobs"][0] for j in r.result["update_jobs"]), r.result["update_jobs"]
        for key in ("noop", "query", "update", "noop_old"):
            if f"{key}_runs" in r.result:
                r.result[key] = statistics.median(r.result[f"{key}_runs"])
        results.append(r.result)
    return results


class _History:
    """One history's database and working directory, and the runs timed on them."""

    def __init__(self, url: str, root: Path, days: int):
        self.url = url
        self.today = NOW.astimezone(TZ).date()
        self.first = self.today - timedelta(days=days - 1)
        self.wd = root / f"wd_{days}d"
        self.result: dict = {"days": days, "noop_runs": [], "update_runs": [], "update_jobs": []}

    def load_and_prepare(self) -> None:
        """The readings of the history into the database; one untimed `latest` (the cron window's charts)."""
        t0 = time.perf_counter()
        lo = datetime.combine(self.first, datetime.min.time(), TZ).astimezone(timezone.utc)
        self.result["rows"] = copy_readings(self.url, lo, NOW, vacuum=True)
        self.result["load_s"] = time.perf_counter() - t0
        # Working directory: the repo's config with start..end = the whole history (so `all` would be it).
        self.config = write_config(self.wd, start=self.first.isoformat(), end=self.today.isoformat(),
                                   cumulative_days=30, lookback_days=2, now=NOW.isoformat())
        self.result["prepare_s"], run = snakemake(self.wd, self.url, "latest")
        self.result["prepare_jobs"] = sum(run.jobs().values())
        self.result["extracts_on_disk"] = len(list(self.wd.glob("results/readings/date=*/data.parquet")))

    def noop(self) -> float:
        s, run = snakemake(self.wd, self.url, "latest")
        assert "Nothing to be done" in run.output and run.jobs() == {}, run.output[-3000:]
        return s

    def time_query(self, repeats: int) -> None:
        """The fingerprint query alone, for the cron block exactly as the Snakefile computes it."""
        plan = settings.make_plan(settings.normalise(dict(self.config)))
        block = plan.with_windows(plan.recent_days)
        source = Source.from_config(self.url, self.config["database"])
        self.result["block_days"] = len(block)
        self.result["query_runs"] = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fps = compute(source, list(plan.sensors), block, plan.tz)
            self.result["query_runs"].append(time.perf_counter() - t0)
        assert len(fps) == len(block)

    def update(self, i: int) -> None:
        """Hour i after NOW arrives in the database; `latest` with `now` at its end."""
        copy_readings(self.url, NOW + timedelta(hours=i), NOW + timedelta(hours=i + 1))
        now = (NOW + timedelta(hours=i + 1)).isoformat()
        s, run = snakemake(self.wd, self.url, "latest", "--config", f"now={now}")
        self.result["update_runs"].append(s)
        self.result["update_jobs"].append(run.jobs())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="histories of 3 and 20 days, one repetition (CI smoke)")
    ap.add_argument("--no-old-files", dest="old_files", action="store_false",
                    help="skip the no-op with 10,000 old images and readings partitions")
    args = ap.parse_args()
    histories, repeats = ((3, 20), 1) if args.quick else ((7, 365), 3)
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-cron-") as tmp:
        with postgres_server(Path(tmp)) as admin_url:
            print(f"histories of {' and '.join(map(str, histories))} days: loading, preparing, timing"
                  " (the timed runs alternate between them) ...", flush=True)
            results = bench_histories(admin_url, Path(tmp), histories, repeats, old_files=args.old_files)

    short, long_ = results
    print(f"\nnow = {NOW.isoformat()} ({NOW.astimezone(TZ):%Y-%m-%d %H:%M %Z}); cumulative_days=30, lookback_days=2;"
          f" median of {repeats} run(s); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'history':>8} {'rows':>10} {'load s':>7} {'prepare s':>10} {'prep jobs':>9} {'extracts':>8}"
          f" {'no-op s':>8} {'update s':>9} {'upd jobs':>8} {'fp query s':>11} {'block':>6}")
    for r in results:
        update_jobs = sum(r["update_jobs"][0].values())
        print(f"{r['days']:>7}d {r['rows']:>10,} {r['load_s']:>7.1f} {r['prepare_s']:>10.1f} {r['prepare_jobs']:>9}"
              f" {r['extracts_on_disk']:>8} {r['noop']:>8.2f} {r['update']:>9.2f} {update_jobs:>8}"
              f" {r['query']:>11.3f} {r['block_days']:>5}d")
    print(f"update jobs per run: {long_['update_jobs'][0]} (same for {short['days']}d: "
          f"{short['update_jobs'][0] == long_['update_jobs'][0]})")
    print(f"results/ holds only the cron window ({long_['extracts_on_disk']} days extracted, history"
          f" {long_['days']} days): no full backfill was run.")
    if "noop_old" in long_:
        print(f"no-op with 10,000 old images + 10,000 old readings partitions ({long_['days']}d):"
              f" {long_['noop_old']:.2f} s vs {long_['noop']:.2f} s without")
    print("runs (s): " + "; ".join(f"{r['days']}d no-op {[round(x, 2) for x in r['noop_runs']]}"
                                    f" update {[round(x, 2) for x in r['update_runs']]}" for r in results))
    assert short["update_jobs"][0] == long_["update_jobs"][0], "update job counts differ between histories"
    print(f"total runtime {time.perf_counter() - t_start:.0f} s")
    s, n = short["days"], long_["days"]
    figures = {
        f"noop_wall_s_{s}d": round(short["noop"], 3), f"noop_wall_s_{n}d": round(long_["noop"], 3),
        f"update_wall_s_{s}d": round(short["update"], 3), f"update_wall_s_{n}d": round(long_["update"], 3),
        "update_history_ratio": round(long_["update"] / short["update"], 3),
        f"fingerprint_query_s_{s}d": round(short["query"], 4), f"fingerprint_query_s_{n}d": round(long_["query"], 4),
        f"update_jobs_{s}d": sum(short["update_jobs"][0].values()),
        f"update_jobs_{n}d": sum(long_["update_jobs"][0].values()),
    }
    if "noop_old" in long_:
        figures["noop_with_10k_old_files_s"] = round(long_["noop_old"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
