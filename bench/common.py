"""Helpers shared by the benchmarks: PostgreSQL scratch databases, synthetic readings, running snakemake.

Nothing here times anything; the benchmark scripts do. Importing this module puts the project's package
(``workflow/scripts``) and the test helpers (``tests``) on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

REPO = Path(__file__).resolve().parents[1]
# The workflow under test: the repository, or a copy of it taken by snapshot_workflow() (the variable
# carries the choice into worker processes, which import this module again).
SNAPSHOT_VARIABLE = "SENSORCHARTS_BENCH_WORKFLOW"
WORKFLOW = Path(os.environ.get(SNAPSHOT_VARIABLE) or REPO)
WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles", "environment.yml")
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(WORKFLOW / "workflow" / "scripts"))
from workflow_runner import Run, pids_naming, stop_processes_naming  # noqa: E402  (Run.jobs() parses "Job stats")

TZ = ZoneInfo("America/Los_Angeles")
NOW = datetime(2025, 6, 30, 19, 0, tzinfo=timezone.utc)  # 12:00 PDT on 2025-06-30: "today" of the benchmarks
SENSORS = ("temperature", "humidity", "pressure")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DDL = """
CREATE TABLE sensor_readings (recorded_at timestamptz, sensor_type text, value double precision, device_id text);
CREATE INDEX sensor_readings_time ON sensor_readings (recorded_at);
"""
# Settings that would make a run upload or index (see docs/publishing.md); benchmarks run with uploads off.
PUBLISHING_PREFIXES = ("PINATA_", "CLOUDFLARE_", "KV_NAMESPACE_ID", "DELETE_LOCAL_FILES")


# --- PostgreSQL -----------------------------------------------------------------------------------


def libpq(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg2://`` URL as a libpq one."""
    return url.replace("postgresql+psycopg2://", "postgresql://")


def admin_sql(admin_url: str, sql: str) -> None:
    """Run ``sql`` in autocommit mode (CREATE/DROP DATABASE cannot run in a transaction)."""
    import psycopg2

    con = psycopg2.connect(libpq(admin_url))
    con.autocommit = True
    try:
        con.cursor().execute(sql)
    finally:
        con.close()


@contextlib.contextmanager
def postgres_server(tmp: Path) -> Iterator[str]:
    """Admin URL of the server ``DATABASE_URL`` names when it is PostgreSQL, else of a throwaway pgserver."""
    admin_url = os.environ.get("DATABASE_URL", "")
    if admin_url.startswith("postgresql"):
        yield admin_url
        return
    import pgserver

    server = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str, ddl: str | None = DDL) -> Iterator[str]:
    """A new database (with ``ddl`` run in it) on the admin URL's server; dropped, by force, afterwards."""
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin_sql(admin_url, f"CREATE DATABASE {name}")
    try:
        url = make_url(admin_url).set(drivername="postgresql+psycopg2", database=name)
        url = url.render_as_string(hide_password=False)
        if ddl:
            admin_sql(url, ddl)
        yield url
    finally:
        admin_sql(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def synthetic_readings(lo: datetime, hi: datetime, step_s: int = 60, columns: str = "db") -> pa.Table:
    """One reading every ``step_s`` seconds per sensor in ``[lo, hi)`` (UTC): diurnal cycle plus noise.

    ``columns="db"`` names the columns as in ``sensor_readings`` (recorded_at, sensor_type, value,
    device_id); ``columns="extract"`` as in an extract Parquet (recorded_at, sensor, value, device).
    """
    t0 = np.datetime64(lo.replace(tzinfo=None), "s")
    seconds = np.arange(t0, np.datetime64(hi.replace(tzinfo=None), "s"), np.timedelta64(step_s, "s"))
    t = np.repeat(seconds, len(SENSORS)).astype("datetime64[us]")
    sensor = np.tile(np.arange(len(SENSORS)), len(seconds))
    phase = 2 * np.pi * (seconds.astype(np.int64) % 86_400) / 86_400  # diurnal cycle (UTC-based; fine here)
    base = np.stack([20 + 5 * np.sin(phase), 55 - 15 * np.sin(phase), 1013 + 2 * np.cos(phase)], 1).ravel()
    noise = np.random.default_rng(int(seconds[0].astype(np.int64)) // 60).normal(0, 0.3, len(t))
    names = ("sensor_type", "device_id") if columns == "db" else ("sensor", "device")
    return pa.table({
        "recorded_at": pa.array(t, pa.timestamp("us", tz="UTC")),
        names[0]: pa.array(np.array(SENSORS)[sensor]),
        "value": (base + noise).round(3),
        names[1]: pa.array(["station-1"] * len(t)),
    })


def copy_table(url: str, table: pa.Table, vacuum: bool = False) -> int:
    """COPY ``table`` (columns of ``sensor_readings``, in order) into the database; returns its rows."""
    import psycopg2

    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
    buf.seek(0)
    con = psycopg2.connect(libpq(url))
    con.autocommit = True
    try:
        cur = con.cursor()
        cur.copy_expert("COPY sensor_readings FROM STDIN WITH (FORMAT csv)", buf, size=1 << 20)
        if vacuum:  # hint bits + statistics now, not during (or beside, via autovacuum) a timed run
            cur.execute("VACUUM ANALYZE sensor_readings")
    finally:
        con.close()
    return table.num_rows


def copy_readings(url: str, lo: datetime, hi: datetime, vacuum: bool = False, step_s: int = 60) -> int:
    """COPY one reading every ``step_s`` seconds per sensor in ``[lo, hi)`` (UTC); returns rows."""
    return copy_table(url, synthetic_readings(lo, hi, step_s), vacuum)


# --- the workflow and snakemake --------------------------------------------------------------------


def snapshot_workflow(dest: Path) -> Path:
    """Copy the workflow (Snakefile, rules, scripts, package, config, profile) to ``dest`` and use that copy
    from now on, here and in worker processes: edits made to the repository while a long benchmark runs
    then change nothing in it. Call it before anything imports ``sensorcharts``."""
    import shutil

    global WORKFLOW
    assert "sensorcharts" not in sys.modules, "snapshot_workflow() must run before sensorcharts is imported"
    dest.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    WORKFLOW = dest
    os.environ[SNAPSHOT_VARIABLE] = str(dest)
    sys.path.insert(0, str(dest / "workflow" / "scripts"))
    return dest


def workflow_version() -> str:
    """The repository's commit, and how many workflow files differ from it (uncommitted edits)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    changed = git("status", "--porcelain", "--", *WORKFLOW_FILES).splitlines()
    return f"{commit}" + (f" + uncommitted changes in {len(changed)} workflow file(s)" if changed else " (clean)")


RUNTIME_DIR: Path | None = None  # XDG_RUNTIME_DIR of the snakemake runs, while private_runtime() is active


@contextlib.contextmanager
def private_runtime(folder: Path) -> Iterator[dict]:
    """Run the snakemake calls inside with ``XDG_RUNTIME_DIR=folder``.

    Per-user state a workflow keeps there (the warm job server of sensorcharts.warm puts its socket there)
    is then the scenario's own: it starts cold, is not shared with other runs on the machine, and whatever
    is still running from it afterwards (a process whose command line names ``folder``: only processes
    this scenario started do) is stopped, by its pid.
    """
    global RUNTIME_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    RUNTIME_DIR = folder
    state: dict = {"folder": folder, "stopped": []}
    try:
        yield state
    finally:
        RUNTIME_DIR = None
        state["stopped"] = stop_processes_naming(folder)


def cpu_of_processes_naming(folder: Path) -> tuple[float, float]:
    """CPU seconds of the processes whose command line names a path in ``folder``: their own, and their
    children's that they waited for. In a private runtime folder that is the warm job server (own) and the
    jobs it forked and reaped (children)."""
    own = children = 0
    for pid in pids_naming(folder):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own += int(fields[11]) + int(fields[12])  # utime, stime (proc(5): fields 14 and 15)
        children += int(fields[13]) + int(fields[14])  # cutime, cstime
    tick = os.sysconf("SC_CLK_TCK")
    return own / tick, children / tick


def write_config(wd: Path, **overrides) -> dict:
    """``wd/config/config.yaml`` = the workflow's config updated with ``overrides``; returns it."""
    config = yaml.safe_load((WORKFLOW / "config/config.yaml").read_text())
    config.update(overrides)
    (wd / "config").mkdir(parents=True, exist_ok=True)
    (wd / "config/config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return config


def snakemake_env(url: str) -> dict[str, str]:
    """The environment without publishing settings (uploads off) and with ``DATABASE_URL=url``."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith(PUBLISHING_PREFIXES)}
    env.update(DATABASE_URL=url, MPLBACKEND="Agg", PATH=f"{Path(SNAKEMAKE).parent}:{env.get('PATH', '')}")
    if RUNTIME_DIR is not None:
        env["XDG_RUNTIME_DIR"] = str(RUNTIME_DIR)
    return env


def snakemake(wd: Path, url: str, *args: str, cores: int = 2) -> tuple[float, Run]:
    """Run snakemake in ``wd`` against ``url``; return (wall seconds, Run). Exits with the output tail on failure."""
    cmd = [SNAKEMAKE, "--snakefile", str(WORKFLOW / "Snakefile"), "--directory", str(wd), "--cores", str(cores), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(url), cwd=wd)
    seconds = time.perf_counter() - t0
    run = Run(proc.returncode, proc.stdout + proc.stderr)
    if proc.returncode:
        sys.exit(f"snakemake {' '.join(args)} failed ({proc.returncode}) in {wd}:\n{run.output[-4000:]}")
    return seconds, run


# --- the machine ----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
