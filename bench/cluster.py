"""Benchmark: a backfill on a Slurm cluster of this machine against the same backfill run locally.

    tools/slurm-local start                             # a single-node cluster of this machine
    tools/with-env python bench/cluster.py             # 30 days, 2 rounds (local, cluster, local, cluster)
    tools/with-env python bench/cluster.py --quick     # 3 days, 1 round

Both runs chart the same synthetic PostgreSQL days (as bench/run.py's backfill: one reading a minute for
three sensors, America/Los_Angeles, from 2025-05-01) from an empty results/ with ``--cores 2``, uploads
off; the cluster run adds ``--profile profiles/slurm`` and the Slurm executor of ``<venv>/cluster``
(``tools/with-env --cluster true`` installs it; the local run does without it, as a local user's would).
Each round's two runs are back to back and each figure keeps its best round. Every output of the cluster
run is compared with the local run's (PNG, Parquet, HTML byte for byte; JSON but for the run's own times).

Figures: ``cluster_wall_s``, ``local_wall_s`` and their ratio ``cluster_to_local`` (target ≤ 2);
``cluster_jobs`` (Slurm jobs submitted); ``overhead_per_cluster_job_s`` = (cluster wall − local wall) / cluster
jobs; ``cluster_job_snakemake_s``, the wall time of each cluster job's Snakemake (from its Slurm log).
bench/run.py runs the quick or full version of this after its own scenarios when a cluster answers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (also puts the package and the test helpers on sys.path)
from common import NOW, TZ, copy_readings, load_average, private_runtime, scratch_database  # noqa: E402

from cluster_runner import EXTRAS, cancel_jobs_of, cluster_missing, differences, submitted  # noqa: E402
from workflow_runner import Run  # noqa: E402

FIRST = date(2025, 5, 1)  # as bench/run.py's backfill: no DST change, every day before NOW
CORES = 2
DEADLINE_S = 1800
ELAPSED = re.compile(r"^Elapsed time: (\d+):(\d\d):(\d\d(?:\.\d+)?)$", re.M)


def run_snakemake(wd: Path, url: str, *args: str, cluster: bool) -> tuple[float, Run]:
    """snakemake in ``wd`` (the Slurm executor on PYTHONPATH only for ``cluster``), killed after DEADLINE_S;
    returns (wall seconds, Run) and exits with the output's tail if it fails."""
    env = common.snakemake_env(url)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != EXTRAS]
    env["PYTHONPATH"] = os.pathsep.join(([str(EXTRAS)] if cluster else []) + paths)
    cmd = ["timeout", "-s", "KILL", str(DEADLINE_S), common.SNAKEMAKE, "--snakefile",
           str(common.WORKFLOW / "Snakefile"), "--directory", str(wd), "--cores", str(CORES), *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=wd)
    finally:
        if cluster:
            cancel_jobs_of(wd)
    seconds = time.perf_counter() - t0
    done = Run(proc.returncode, proc.stdout + proc.stderr)
    if proc.returncode:
        sys.exit(f"snakemake {' '.join(args)} failed ({proc.returncode}) in {wd}:\n{done.output[-4000:]}")
    return seconds, done


def run_config(days: int) -> dict:
    return dict(start=FIRST.isoformat(), end=(FIRST + timedelta(days=days - 1)).isoformat(), now=NOW.isoformat(),
                cumulative_days=30, lookback_days=2)


def job_seconds(wd: Path) -> list[float]:
    """Wall seconds of each cluster job's Snakemake, from the Slurm logs (kept with --slurm-keep-successful-logs)."""
    found = []
    for log in sorted((wd / ".snakemake/slurm_logs").glob("*/*.log")):
        for h, m, s in ELAPSED.findall(log.read_text(errors="replace")):
            found.append(round(int(h) * 3600 + int(m) * 60 + float(s), 1))
    return found


def measure(admin_url: str, root: Path, days: int, rounds: int, say=print) -> dict:
    """Backfill ``days`` days locally and on the cluster, ``rounds`` times each, alternating; the figures."""
    locals_, clusters = [], []
    with scratch_database(admin_url, "bench_cluster") as url:
        from sensorcharts.timegrid import day_bounds

        lo, _ = day_bounds(FIRST, TZ)
        _, hi = day_bounds(FIRST + timedelta(days=days - 1), TZ)
        rows = copy_readings(url, lo, hi, vacuum=True)
        for i in range(rounds):
            local_wd, cluster_wd = root / f"local_{days}d_{i}", root / f"slurm_{days}d_{i}"
            for wd in (local_wd, cluster_wd):
                common.write_config(wd, **run_config(days))
            say(f"cluster bench: {days} days ({rows:,} readings), local run (round {i + 1} of {rounds})")
            with private_runtime(root / "xdg" / f"local{i}"):
                local_s, _ = run_snakemake(local_wd, url, cluster=False)
            say(f"cluster bench: local {local_s:.1f} s; the same on Slurm (--profile profiles/slurm)")
            with private_runtime(root / "xdg" / f"slurm{i}"):
                cluster_s, done = run_snakemake(cluster_wd, url, "--profile", str(common.WORKFLOW / "profiles/slurm"),
                                                "--slurm-keep-successful-logs", cluster=True)
            jobs = submitted(done)
            found = differences(local_wd / "results", cluster_wd / "results")
            assert not found, f"the cluster run's outputs differ from the local run's: {found[:10]}"
            say(f"cluster bench: Slurm {cluster_s:.1f} s, {len(jobs)} cluster jobs"
                f" (their Snakemakes: {job_seconds(cluster_wd)} s); every output as in the local run")
            locals_.append(local_s)
            clusters.append((cluster_s, len(jobs), job_seconds(cluster_wd)))
    local_s = min(locals_)
    cluster_s, jobs, per_job = min(clusters)
    return {
        "cluster_days": days,
        "cluster_wall_s": cluster_s,
        "local_wall_s": local_s,
        "cluster_to_local": cluster_s / local_s,
        "cluster_jobs": jobs,
        "overhead_per_cluster_job_s": (cluster_s - local_s) / max(jobs, 1),
        "cluster_job_snakemake_s": per_job,
        "cluster_wall_s_rounds": [round(c[0], 1) for c in clusters],
        "local_wall_s_rounds": [round(x, 1) for x in locals_],
    }


TARGETS = {"cluster_to_local": ("<=", 2.0)}


def from_suite(admin_url: str, root: Path, quick: bool, say) -> dict:
    """bench/run.py's cluster scenario: the figures, or none (saying why) when no cluster answers here."""
    missing = cluster_missing()
    if missing:
        say(f"cluster bench: skipped: {missing}")
        return {}
    (root / "cluster").mkdir()
    return measure(admin_url, root / "cluster", 3 if quick else 30, 1 if quick else 2, say)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 days, one round")
    ap.add_argument("--keep", type=Path, help="keep the working directories under this (new) folder")
    args = ap.parse_args()
    missing = cluster_missing()
    if missing:
        sys.exit(f"bench/cluster.py: {missing}")
    load_start, t0 = load_average(), time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True)
        root, tmp = args.keep.resolve(), None
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-cluster-")
        root = Path(tmp.name)
    try:
        common.snapshot_workflow(root / "workflow-snapshot")
        with common.postgres_server(root) as admin_url:
            figures = measure(admin_url, root, 3 if args.quick else 30, 1 if args.quick else 2,
                              say=lambda message: print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True))
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"\nload average (1/5/15 min) {load_start} at start, {load_average()} at end;"
          f" total {time.perf_counter() - t0:.0f} s; workflow {common.workflow_version()}")
    for key, value in figures.items():
        target = TARGETS.get(key)
        met = "" if not target else f"  target {target[0]} {target[1]}: {'met' if value <= target[1] else 'missed'}"
        print(f"{key:<28} {value if isinstance(value, list) else round(value, 3)}{met}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
