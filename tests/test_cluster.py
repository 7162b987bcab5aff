"""The workflow on a real Slurm cluster (``--profile profiles/slurm``) against the same run made locally.

The tests marked ``cluster`` need a running cluster whose jobs see this machine's files (``tools/slurm-local
start`` makes one of this machine) and the Slurm executor in ``<venv>/cluster`` (``tools/with-env --cluster
true`` installs it). Without them they are skipped, saying why; in CI (``CI=true``, where ``.ci/run`` sets
both up) they fail instead. Every snakemake run has a deadline (``timeout -s KILL``); whatever a test leaves
queued on the cluster is cancelled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from datetime import date
from pathlib import Path

import pytest

from cluster_runner import EXTRAS, cancel_jobs_of, cluster_missing, differences, processes_naming, submitted
from sensorcharts.timegrid import zone
from test_workflow import SENSORS, minute_readings
from workflow_runner import REPO, SNAKEMAKE, Run, Workdir

LA = zone("America/Los_Angeles")
RUN_DEADLINE_S = 900


@pytest.fixture(scope="module")
def slurm():
    """A Slurm cluster to submit to, or a skip (a failure in CI) saying what is missing."""
    missing = cluster_missing()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"{missing}; CI must run the cluster tests (.ci/run starts a cluster)")
    if missing:
        pytest.skip(missing)


@pytest.fixture
def jobtmp():
    """A temporary folder with a short path (TMPDIR of the cluster jobs, where each makes its runtime folder,
    whose socket paths must stay short: see sensorcharts/cluster.py)."""
    folder = Path(tempfile.mkdtemp(prefix="sensorcharts-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run(wd: Workdir, *args: str, env: dict | None = None, deadline_s: float = RUN_DEADLINE_S) -> Run:
    """snakemake in ``wd`` (with ``env`` added to its environment), killed after ``deadline_s``."""
    env = dict(wd.env, PATH=f"{Path(SNAKEMAKE).parent}:{wd.env.get('PATH', '')}") | (env or {})
    cmd = ["timeout", "-s", "KILL", str(int(deadline_s)), SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(wd.path), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=wd.path)
    finally:
        cancel_jobs_of(wd.path)
    return Run(proc.returncode, proc.stdout + proc.stderr)


def cluster_env(jobtmp: Path) -> dict:
    """What a cluster run adds to the environment: the Slurm executor, and the jobs' TMPDIR."""
    pythonpath = os.pathsep.join(filter(None, [str(EXTRAS), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": pythonpath, "TMPDIR": str(jobtmp)}


@pytest.mark.cluster
def test_a_backfill_on_slurm_makes_what_a_local_run_makes(slurm, sqlite_db, tmp_path, jobtmp):
    """Three days around the fall-back (a 25-hour day), on the cluster through profiles/slurm and locally:
    every output the same; each day's work and the heatmaps as one cluster job each, each run by one
    Snakemake that stops its warm job server when it ends."""
    sqlite_db.insert(minute_readings(date(2025, 10, 31), date(2025, 11, 3), LA, sensors=SENSORS))
    config = dict(start="2025-11-01", end="2025-11-03", cumulative_days=3, now="2025-11-20T00:00:00+00:00")
    local = Workdir(tmp_path / "local", sqlite_db.url, **config)
    assert run(local, "--cores", "2").returncode == 0
    on_slurm = Workdir(tmp_path / "slurm", sqlite_db.url, **config)
    done = run(on_slurm, "--profile", str(REPO / "profiles" / "slurm"), "--slurm-keep-successful-logs",
               env=cluster_env(jobtmp))
    assert done.returncode == 0, done.output[-4000:]

    assert differences(local.path / "results", on_slurm.path / "results") == []
    assert len(on_slurm.files("results/images/*/hourly/2025-11-02T*.png")) == 25 * len(SENSORS)
    # Two cluster jobs: the days' extract, render and upload jobs, then the heatmaps and their uploads.
    # The index and the report are made by the submitting Snakemake (localrules).
    jobs = submitted(done)
    assert len(jobs) == 2, done.output[-4000:]
    # Each cluster job said when it ended, so Slurm was asked then; the run's folder of such files is gone.
    for job in jobs:
        assert f"Slurm job {job} said it had ended, and Slurm was asked at once" in done.output, done.output[-4000:]
    ended = on_slurm.path / ".snakemake/sensorcharts-slurm-ended"
    assert ended.is_dir() and list(ended.iterdir()) == []
    logs = on_slurm.files(".snakemake/slurm_logs/*/*.log")
    assert sorted(p.parent.name.split("_")[1] for p in logs) == ["cumulative", "day"]
    for log in logs:
        text = log.read_text()
        # The job's rules ran in the job script's own Snakemake, in threads: no job step, no Snakemake per rule.
        assert text.count("Snakemake version") == 1, text[-3000:]
        assert "srun" not in text
        assert "running in a process of its own" not in text  # the job's warm server served its rules
        # Its warm server lived in a runtime folder of its own, which is gone, with every process in it.
        (line,) = [x for x in text.splitlines() if "runtime folder of this cluster job" in x]
        folder = Path(line.split(": ")[-1])
        assert folder.parent == jobtmp
        assert not folder.exists() and processes_naming(folder) == []


@pytest.mark.cluster
def test_a_status_command_that_cannot_work_stops_the_run_before_any_job(slurm, sqlite_db, tmp_path, jobtmp):
    """sacct on a cluster without accounting (tools/slurm-local's): one sentence, nothing submitted."""
    accounting = subprocess.run(["sacct", "-n", "-X", "-j", "1"], capture_output=True, text=True, timeout=60)
    if accounting.returncode == 0:
        pytest.skip("this cluster has accounting: sacct works here")
    sqlite_db.insert(minute_readings(date(2025, 1, 15), date(2025, 1, 15), LA))
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-01-15", end="2025-01-15", cumulative_days=1,
                 now="2025-11-20T00:00:00+00:00")
    done = run(wd, "--profile", str(REPO / "profiles" / "slurm"), "--slurm-status-command", "sacct",
               env=cluster_env(jobtmp), deadline_s=300)
    assert done.returncode == 1, done.output[-3000:]
    assert "stopped before submitting any job: Slurm cannot report job states with sacct here" in done.output
    assert "slurm-status-command: squeue" in done.output
    assert submitted(done) == [] and not wd.files("results/readings/*/*.parquet")


@pytest.mark.cluster
def test_a_job_whose_state_stays_unknown_fails_the_run_with_the_reason(slurm, sqlite_db, tmp_path, jobtmp):
    """squeue answers once (the check before the first submission), then fails: the job is reported failed
    after SENSORCHARTS_STATUS_UNKNOWN_LIMIT_S, with the reason, and the run ends instead of waiting."""
    real = shutil.which("squeue")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "squeue").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ ! -e "{tmp_path}/answered" ]; then touch "{tmp_path}/answered"; exec {real} "$@"; fi
        echo "squeue: error: Unable to contact slurm controller (connect failure)" >&2
        exit 1
        """))
    (fake / "squeue").chmod(0o755)
    sqlite_db.insert(minute_readings(date(2025, 1, 15), date(2025, 1, 15), LA))
    wd = Workdir(tmp_path / "wd", sqlite_db.url, start="2025-01-15", end="2025-01-15", cumulative_days=1,
                 now="2025-11-20T00:00:00+00:00")
    env = dict(cluster_env(jobtmp), SENSORCHARTS_STATUS_UNKNOWN_LIMIT_S="20",
               PATH=f"{fake}:{Path(SNAKEMAKE).parent}:{os.environ['PATH']}")
    done = run(wd, "--profile", str(REPO / "profiles" / "slurm"), env=env, deadline_s=600)
    assert done.returncode == 1, done.output[-3000:]
    (job,) = submitted(done)
    assert f"the state of Slurm job {job} has been unknown for" in done.output
    assert "(squeue '--format=" in done.output and "it fails), so the run stops waiting for it" in done.output


def test_a_cluster_jobs_warm_server_is_its_own_and_stops_with_it(jobtmp):
    """What a cluster job's Snakemake does (sensorcharts.cluster.private_runtime_folder): its warm job server
    starts in a fresh runtime folder, whatever XDG_RUNTIME_DIR it was given, and is stopped, and the
    folder removed, when the process exits. No cluster needed."""
    given = jobtmp / "from-the-login-node"  # exported by the submitting shell; not on this "node"
    job = textwrap.dedent("""
        import glob, os, sys, time
        from sensorcharts import cluster, warm
        folder = cluster.private_runtime_folder()
        print(folder, flush=True)
        warm.start_early()
        deadline = time.monotonic() + 120
        while not glob.glob(os.path.join(folder, "**", "*.sock"), recursive=True):
            assert time.monotonic() < deadline, "the warm server did not start"
            time.sleep(0.1)
        """)
    env = dict(os.environ, TMPDIR=str(jobtmp), XDG_RUNTIME_DIR=str(given),
               PYTHONPATH=str(REPO / "workflow" / "scripts"))
    done = subprocess.run(["timeout", "-s", "KILL", "300", sys.executable, "-c", job], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = Path(done.stdout.split()[0])
    assert folder.parent == jobtmp and folder != given
    assert "runtime folder of this cluster job" in done.stderr
    assert processes_naming(folder) == [] and not folder.exists()
