"""Running the workflow on a Slurm cluster, for tests/test_cluster.py and bench/cluster.py: whether a cluster
is there, what a run submitted, and how its outputs compare with a local run's. Nothing here imports the
workflow's package (bench/cluster.py imports this before it picks the workflow copy it measures)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from workflow_runner import Run

EXTRAS = Path(sys.prefix) / "cluster"  # where tools/with-env --cluster installs the Slurm executor


def cluster_missing() -> str | None:
    """Why the cluster tests cannot run here, or None."""
    if not (EXTRAS / "snakemake_executor_plugin_slurm").is_dir():
        return f"the Slurm executor is not installed in {EXTRAS} (tools/with-env --cluster true installs it)"
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return "Slurm's commands are not installed (apt-get install slurm-wlm munge; tools/slurm-local start)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s: no Slurm controller (tools/slurm-local start)"
    if states.returncode != 0:
        return f"no Slurm cluster answers ({states.stderr.strip()}; tools/slurm-local start starts one)"
    if not {"idle", "mixed", "allocated"} & set(states.stdout.split()):
        return f"the cluster has no node that takes jobs (sinfo: {states.stdout.split()})"
    return None


def cancel_jobs_of(folder: Path) -> None:
    """Cancel the cluster jobs whose working directory is ``folder``."""
    try:
        listed = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return
    ids = [line.split()[0] for line in listed.stdout.splitlines() if line.split()[1:] == [str(folder)]]
    if ids:
        subprocess.run(["scancel", *ids], timeout=30, check=False)


def submitted(run_: Run) -> list[str]:
    """The Slurm job ids the run submitted."""
    return [line.split("SLURM jobid ")[1].split()[0] for line in run_.output.splitlines()
            if "has been submitted with SLURM jobid" in line]


def processes_naming(folder: Path) -> list[str]:
    needle = str(folder).encode() + b"/"
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
        except OSError:
            continue
        if needle in cmdline:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


# What two runs of the same work cannot share: the time a chart took to draw (in the metadata, and as the
# report shows it) and when a KV document was made.
RUN_TIMES = ("processing_time", "processing time", "updated_at")


def without_run_times(value):
    if isinstance(value, dict):
        return {k: without_run_times(v) for k, v in value.items() if k not in RUN_TIMES}
    if isinstance(value, list):
        return [without_run_times(v) for v in value]
    return value


RUN_END = b"sensor_charts_last_successful_run_timestamp_seconds "


def ledger_rows(path: Path) -> dict[str, list]:
    """Every table of an SQLite file as sorted rows, text that holds JSON read as data without RUN_TIMES."""
    import sqlite3

    def value(cell):
        if isinstance(cell, str) and cell.startswith("{"):
            return json.dumps(without_run_times(json.loads(cell)), sort_keys=True)
        return cell

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(tuple(map(value, row)) for row in db.execute(f'SELECT * FROM "{t}"')) for t in tables}


def differences(local: Path, cluster: Path) -> list[str]:
    """Files of ``local`` and ``cluster`` (results folders) that differ: JSON (and the JSON in the publishing
    ledger's rows) compared as data without RUN_TIMES, counters without the run's end, everything else (PNG,
    Parquet, HTML) byte for byte."""
    ours = {p.relative_to(local) for p in local.rglob("*") if p.is_file()}
    theirs = {p.relative_to(cluster) for p in cluster.rglob("*") if p.is_file()}
    found = [f"only in the local run: {p}" for p in sorted(ours - theirs)]
    found += [f"only in the cluster run: {p}" for p in sorted(theirs - ours)]
    for rel in sorted(ours & theirs):
        a, b = (local / rel).read_bytes(), (cluster / rel).read_bytes()
        if rel.suffix == ".json":
            same = without_run_times(json.loads(a)) == without_run_times(json.loads(b))
        elif rel.suffix == ".sqlite":  # the publishing ledger: its rows, KV values as data without RUN_TIMES
            same = ledger_rows(local / rel) == ledger_rows(cluster / rel)
        elif rel.suffix == ".prom":  # Prometheus counters, but when the run ended (the cron's heartbeat)
            same = [x for x in a.splitlines() if not x.startswith(RUN_END)] == [
                x for x in b.splitlines() if not x.startswith(RUN_END)]
        else:
            same = a == b
        if not same:
            found.append(f"differs: {rel}")
    return found
