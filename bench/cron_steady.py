"""Benchmark: a steady cron run (`snakemake latest` after one new 5-minute slice) vs a no-op, late in the day.

At 23:00 local, today has 24 hourly charts per sensor; one new slice of readings changes the daily chart,
the current hour's chart and the heatmap of each sensor, nothing else. A fresh PostgreSQL database holds
7 local days (America/Los_Angeles) of one reading a minute for temperature, humidity and pressure up to
23:00 of the benchmarks' today; a working directory runs `latest` once (untimed) and one untimed slice (the
hour T23 gets its first readings). Then it alternates, median of N each:
  no-op    `snakemake --cores 2 latest` with nothing new ("Nothing to be done" is asserted)
  steady   five more minutes of readings, config `now` five minutes later, then `latest`
and counts the charts each steady run drew, from the metadata of the render jobs it ran (``drawn``; a
chart without it, from a workflow that draws every chart, counts as drawn).

Usage: tools/with-env python bench/cron_steady.py [--quick]   (bench/run.py runs it too, via bench_steady)
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOW, TZ, copy_readings, postgres_server, scratch_database, snakemake, write_config  # noqa: E402

HISTORY_DAYS = 7
SLICE = timedelta(minutes=5)
# 23:00 local on the benchmarks' today: the day's 24 hourly charts of every sensor exist.
LATE = datetime.combine(NOW.astimezone(TZ).date(), datetime.min.time().replace(hour=23), TZ).astimezone(timezone.utc)


def drawn_charts(wd: Path, today: str, jobs: dict[str, int]) -> int:
    """Charts drawn by the render jobs of a run (``jobs``: its job counts per rule), from their metadata."""
    drawn = 0
    for kind, ran in (("day", any(r.startswith("render_day_") for r in jobs)),
                      ("cumulative", "render_cumulative" in jobs)):
        if ran:
            metas = json.loads((wd / f"results/metadata/{kind}/{today}.json").read_text())
            drawn += sum(1 for m in metas if m.get("drawn", True))
    return drawn


def bench_steady(admin_url: str, root: Path, repeats: int) -> dict:
    """Time no-op and steady `latest` runs at 23:00 local (see the module docstring)."""
    r: dict = {}
    today = LATE.astimezone(TZ).date()
    with scratch_database(admin_url, "bench_steady") as url:
        first = today - timedelta(days=HISTORY_DAYS - 1)
        lo = datetime.combine(first, datetime.min.time(), TZ).astimezone(timezone.utc)
        r["rows"] = copy_readings(url, lo, LATE, vacuum=True)
        wd = root / "steady"
        write_config(wd, start=first.isoformat(), end=today.isoformat(), cumulative_days=30, lookback_days=2,
                     now=LATE.isoformat())
        r["prepare_s"], _ = snakemake(wd, url, "latest")
        now = LATE

        def step() -> tuple[float, dict]:
            nonlocal now
            copy_readings(url, now, now + SLICE)
            now += SLICE
            seconds, run = snakemake(wd, url, "latest", "--config", f"now={now.isoformat()}")
            return seconds, run.jobs()

        step()  # T23's first readings: from here on every slice is like the next
        r["noop_runs"], r["steady_runs"], r["steady_jobs"], r["steady_drawn"] = [], [], [], []
        for _ in range(repeats):  # alternating, so that drift affects both alike
            seconds, run = snakemake(wd, url, "latest", "--config", f"now={now.isoformat()}")
            assert "Nothing to be done" in run.output and run.jobs() == {}, run.output[-3000:]
            r["noop_runs"].append(seconds)
            seconds, jobs = step()
            r["steady_runs"].append(seconds)
            r["steady_jobs"].append(jobs)
            r["steady_drawn"].append(drawn_charts(wd, today.isoformat(), jobs))
        r["charts_today"] = len(list(wd.glob(f"results/images/*/*/{today.isoformat()}*.png")))
        r["last_now"] = now.astimezone(TZ).isoformat()
    r["noop"], r["steady"] = statistics.median(r["noop_runs"]), statistics.median(r["steady_runs"])
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repetition")
    args = ap.parse_args()
    repeats = 1 if args.quick else 3
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-steady-") as tmp:
        with postgres_server(Path(tmp)) as admin_url:
            r = bench_steady(admin_url, Path(tmp), repeats)
    print(f"at {r['last_now']}: no-op {r['noop']:.2f} s, steady {r['steady']:.2f} s"
          f" (ratio {r['steady'] / r['noop']:.2f}); charts drawn per steady run {r['steady_drawn']}"
          f" of {r['charts_today']} of today; jobs {r['steady_jobs'][0]}; {os.cpu_count()} CPUs,"
          f" load {os.getloadavg()[0]:.2f}; total {time.perf_counter() - t0:.0f} s")
    print(json.dumps({"steady_wall_s": round(r["steady"], 3), "noop_wall_s": round(r["noop"], 3),
                      "steady_to_noop": round(r["steady"] / r["noop"], 3), "steady_charts_drawn": r["steady_drawn"]}))


if __name__ == "__main__":
    main()
