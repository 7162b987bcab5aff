"""The warm fork server (sensorcharts/warm.py) and how ``sensorcharts.jobs.run_step`` hands it jobs.

The clients, the probe workflow script and the cleanup are warm_rig.py's (real processes, real sockets,
nothing of the project mocked); tests/test_security.py has the tests with a second user of the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import utc
from warm_rig import (
    DEADLINE_S,
    SCRIPTS,
    Client,
    Rig,
    alive,
    listening,
    processes_naming,
    read_json,
    wait_for,
    write_job,
)

from workflow_runner import Workdir, stop_processes_naming


@pytest.fixture
def rig(tmp_path):
    with Rig(tmp_path) as rig:
        yield rig


# ---------------------------------------------------------------------------------------------------------
# (1) A job through the server behaves as the job run in its own interpreter
# ---------------------------------------------------------------------------------------------------------


def test_job_through_server_gives_the_in_process_result(rig):
    local = write_job(rig, "local", SENSORCHARTS_WARM="0", WARM_PROBE_VALUE="first")
    warm = write_job(rig, "warm", WARM_PROBE_VALUE="first")
    assert (local.proc.returncode, warm.proc.returncode) == (0, 0), warm.stderr

    out = rig.jobdir / "out"
    local_result, warm_result = read_json(out / "local.json"), read_json(out / "warm.json")
    # The same job object, working directory, environment, … apart from the job's own file names.
    assert warm_result.pop("outputs") == ["out/warm.json", "out/warm.where.json"]
    assert local_result.pop("outputs") == ["out/local.json", "out/local.where.json"]
    assert warm_result.pop("log") == ["logs/warm.log", "bench/warm.tsv"]
    assert local_result.pop("log") == ["logs/local.log", "bench/local.tsv"]
    assert warm_result == local_result
    assert warm_result["cwd"] == str(rig.jobdir)

    # Where each ran: the local job in a fresh interpreter started by the client, the warm one in a child
    # of the server, which had imported pandas already.
    local_where, warm_where = read_json(out / "local.where.json"), read_json(out / "warm.where.json")
    assert local_where["ppid"] == local.proc.pid and not local_where["pandas_loaded"]
    (server,) = rig.servers()
    assert warm_where["ppid"] == server and warm_where["pid"] != warm.proc.pid and warm_where["pandas_loaded"]
    # The job's stdout, stderr and log are the client's.
    for client in (local, warm):
        assert "stdout of same" in client.stdout
        assert "stderr of same" in client.stderr
        assert "probe write starting" in client.log.read_text() and "probe write done" in client.log.read_text()

    # The next job reuses the server, yet sees its own environment, not the one the server started with.
    again = write_job(rig, "again", WARM_PROBE_VALUE="second")
    assert again.proc.returncode == 0, again.stderr
    assert read_json(out / "again.json")["env"] == "second"
    assert read_json(out / "again.where.json")["ppid"] == server
    assert list(rig.servers()) == [server]
    assert rig.sockets() == [rig.socket_path()]


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "fresh-interpreter"])
def test_failing_job_fails_its_client_with_the_jobs_message(rig, warm):
    env = {} if warm else {"SENSORCHARTS_WARM": "0"}
    failed = rig.run("failed", {"mode": "fail", "reason": "sensor 7 exploded"}, **env)
    assert failed.proc.returncode == 1
    assert "probe: probe failed on purpose: sensor 7 exploded" in failed.stderr.splitlines()
    log = failed.log.read_text()
    assert "Traceback" in log and "RuntimeError: probe failed on purpose: sensor 7 exploded" in log
    assert not (rig.jobdir / "out" / "failed.json").exists()

    # A job process that ends with a status of its own gives the client that status.
    exited = rig.run("exited", {"mode": "hard_exit", "code": 7}, **env)
    assert exited.proc.returncode == 7, exited.stderr
    assert bool(rig.servers()) == warm


def test_real_workflow_job_gives_identical_output(rig, sqlite_db):
    """extract_day, a job of the workflow, writes the same Parquet file through the server as without it."""
    sqlite_db.insert([
        (utc(2025, 6, 1, 0, 0), "temperature", 20.5, "dev-1"),
        (utc(2025, 6, 1, 12, 30), "humidity", 55.0, "dev-2"),
        (utc(2025, 6, 1, 23, 59, 59), "temperature", None, None),
        (utc(2025, 6, 2, 0, 0), "temperature", 99.0, "dev-1"),  # the next day
        (utc(2025, 6, 1, 6, 0), "pressure", 1013.0, "dev-3"),  # a sensor not asked for
    ])
    config = {"database": {"url": sqlite_db.url, "table": "sensor_readings"}, "now": "2025-06-05T00:00:00+00:00"}

    params = {"sensors": ["temperature", "humidity"], "timezone": "UTC",
              "validity": {"temperature": {"valid_min": -90, "valid_max": 60}, "humidity": {}}}

    def extract(name: str, **env: str) -> Client:
        return rig.run(name, params, script="extract_day", rule="extract_day", input={"database": str(sqlite_db.path)},
                       output={"readings": f"out/{name}/data.parquet", "hourly": f"out/{name}/hourly.parquet",
                               "daily": f"out/{name}/daily.parquet"},
                       wildcards={"date": "2025-06-01"}, config=config, **env)

    local, warm = extract("local", SENSORCHARTS_WARM="0"), extract("warm")
    assert local.proc.returncode == 0, local.stderr
    assert warm.proc.returncode == 0, warm.stderr
    assert rig.servers()
    made = sorted(p.name for p in (rig.jobdir / "out" / "local").iterdir())
    assert "data.parquet" in made and sorted(p.name for p in (rig.jobdir / "out" / "warm").iterdir()) == made
    for name in made:
        assert (rig.jobdir / "out" / "warm" / name).read_bytes() == (rig.jobdir / "out" / "local" / name).read_bytes()
    for client in (local, warm):
        assert "2025-06-01: 3 readings" in client.log.read_text()

    # And its failure (a database that is not there) fails the client with the same one-line reason.
    config["database"]["url"] = "sqlite:////nonexistent/folder/readings.sqlite"
    local, warm = extract("local_bad", SENSORCHARTS_WARM="0"), extract("warm_bad")
    assert (local.proc.returncode, warm.proc.returncode) == (1, 1)
    reason = [line for line in local.stderr.splitlines() if line.startswith("extract_day: ")]
    assert reason and reason == [line for line in warm.stderr.splitlines() if line.startswith("extract_day: ")]


# What a served job imports beyond what warmserver.preload() gave the server: one day's jobs, run in a process that
# did what the server does first; the names go to stdout as JSON.
IMPORTS_PROBE = textwrap.dedent(
    """
    import json
    import sys

    from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, Wildcards

    import extract_day, render_cumulative, render_day  # the scripts: imported by run_main in the child
    from sensorcharts import warmserver
    from sensorcharts.jobprocess import Job, describe

    jobs = [(spec["script"], Job(describe(spec["rule"], InputFiles(fromdict=spec["input"]),
                                          OutputFiles(fromdict=spec["output"]), Params(fromdict=spec["params"]),
                                          Wildcards(fromdict=spec["wildcards"]), Log(), spec["config"])))
            for spec in json.load(open(sys.argv[1]))]
    warmserver.preload()
    before = set(sys.modules)
    for script, job in jobs:
        sys.modules[script].main(job)
    print(json.dumps(sorted(set(sys.modules) - before)))
    """
)


def test_served_jobs_import_nothing_the_server_has_not(postgres_db, sqlite_db, tmp_path):
    """A module a job imports for itself is imported again by every job (each is a fresh fork): the
    PostgreSQL dialect and pyarrow.dataset alone cost 0.2 s per extract before they were preloaded."""
    rows = [(utc(2025, 6, 1, h, m), sensor, 20.0 + h + m / 60, "dev-1")
            for h in range(24) for m in (0, 30) for sensor in ("temperature", "humidity")]
    sensors = {"temperature": {"display_name": "Temperature", "unit": "°C"},
               "humidity": {"display_name": "Humidity", "unit": "%"}}
    jobs = []
    for db in (postgres_db, sqlite_db):
        db.insert(rows)
        out = f"{tmp_path}/{db.kind}"
        jobs.append({"script": "extract_day", "rule": "extract_day", "input": {}, "wildcards": {"date": "2025-06-01"},
                     "output": {"readings": f"{out}/readings.parquet", "hourly": f"{out}/hourly.parquet",
                                "daily": f"{out}/daily.parquet"},
                     "params": {"sensors": list(sensors), "timezone": "UTC", "validity": {}},
                     "config": {"database": {"url": db.url, "table": "sensor_readings"},
                                "now": "2025-06-05T00:00:00+00:00"}})
    out = f"{tmp_path}/postgresql"
    jobs.append({"script": "render_day", "rule": "render_day_ordinary", "wildcards": {"date": "2025-06-01"},
                 "input": {"readings": f"{out}/readings.parquet"},
                 "output": {"daily": [f"{out}/{s}/daily/2025-06-01.png" for s in sensors],
                            "hourly": [f"{out}/{s}/hourly/2025-06-01T{h:02d}.png" for s in sensors for h in range(24)],
                            "metadata": f"{out}/day.json"},
                 "params": {"timezone": "UTC", "sensors": sensors}, "config": {}})
    jobs.append({"script": "render_cumulative", "rule": "render_cumulative", "wildcards": {"date": "2025-06-01"},
                 "input": {"hourly": [f"{out}/hourly.parquet"]},
                 "output": {"images": [f"{out}/{s}/cumulative/2025-06-01.png" for s in sensors],
                            "metadata": f"{out}/cumulative.json"},
                 "params": {"timezone": "UTC", "sensors": sensors, "window": 30}, "config": {}})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    (tmp_path / "probe.py").write_text(IMPORTS_PROBE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    done = subprocess.run([sys.executable, str(tmp_path / "probe.py"), str(tmp_path / "jobs.json")], cwd=tmp_path,
                          env=dict(env, PYTHONPATH=str(SCRIPTS), MPLBACKEND="Agg"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("postgresql/*/*/*.png"))) == 2 + 48 + 2  # the jobs did their work
    imported = json.loads(done.stdout.splitlines()[-1])
    assert imported == [], imported


def _render_day_spec(day: str, timezone: str) -> dict:
    """A render_day job as the server receives it (jobprocess.describe), as far as its warm-up reads it."""
    def named(**items):
        return {"items": list(items.values()), "names": {name: [i, None] for i, name in enumerate(items)}}

    return {"rule": "render_day_ordinary", "input": named(), "output": named(), "log": named(), "config": {},
            "params": named(code="x", timezone=timezone, sensors={}), "wildcards": named(date=day)}


def test_after_handing_over_a_render_job_the_server_keeps_the_days_time_axes(capsys):
    """Its next children then start with them drawn (charts.warm_day); a script that cannot warm up costs
    one line on the server's stderr (its error file) and nothing else; a script without ``warm`` is left be."""
    import datetime

    from sensorcharts import warmserver
    from sensorcharts.charts import daily_axis, hourly_axis, line_chart
    from sensorcharts.timegrid import hour_slots, zone

    day, tz = datetime.date(2025, 3, 9), zone("America/Los_Angeles")  # spring forward: 23 hours
    warmserver._warm_for({"script": "render_day", "job": _render_day_spec(day.isoformat(), tz.key)})
    axes = [daily_axis(day, tz), *(hourly_axis(slot, tz)[0] for slot in hour_slots(day, tz))]
    assert len(axes) == 24
    assert all((tuple(xlim), tuple(ticks), xlabel) in line_chart().layers.regions for xlim, ticks, xlabel in axes)
    warmserver._warm_for({"script": "render_day", "job": _render_day_spec("2025-03-10", "Mars/Olympus_Mons")})
    warmserver._warm_for({"script": "extract_day", "job": _render_day_spec("2025-03-10", tz.key)})
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warm-up after a render_day_ordinary job failed:") and "Mars/Olympus_Mons" in line


def test_the_server_learns_the_text_its_jobs_drew_and_later_jobs_draw_it_the_same(rig):
    """A child that succeeds hands back what it added to the text caches (aggcanvas.lesson); the server takes
    it between jobs, so a later child starts with the layout of a string only an earlier job drew, and draws
    the same pixels with it. A job that fails teaches nothing, though it drew its text."""
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    text, unlearned = f"Lesson {stamp} · 21.5 °C", f"Failed {stamp}"  # drawn by no warm-up

    def draw(name: str, drawn: str, fail: bool = False) -> Client:
        return rig.run(name, {"mode": "text", "text": drawn, "check": [unlearned], "fail": fail},
                       output={"result": f"out/{name}.json"})

    assert draw("failed", unlearned, fail=True).proc.returncode != 0
    first = draw("first", text)
    assert first.proc.returncode == 0, first.stderr
    taught = read_json(rig.jobdir / "out" / "first.json")
    assert taught["known"] is False
    # The lessons are taken between jobs, in order, after the server's own warm-up: wait for the first's.
    deadline, attempt = time.monotonic() + DEADLINE_S, 0
    while True:
        attempt += 1
        later = draw(f"later{attempt}", text)
        assert later.proc.returncode == 0, later.stderr
        result = read_json(rig.jobdir / "out" / f"later{attempt}.json")
        assert result["ppid"] == taught["ppid"], "both jobs ran in children of one server"
        assert result["pixels"] == taught["pixels"]
        if result["known"] or time.monotonic() > deadline:
            break
    assert result["known"], f"no job within {DEADLINE_S} s started with the first job's text"
    assert result["checked"] == {unlearned: False}, "the failed job's text was learned"
    server_errors = [p.read_text() for p in rig.runtime.rglob("*.err")]
    assert not any("lesson" in e or "learning" in e for e in server_errors), server_errors


def test_a_lesson_holds_builtin_values_only():
    """What a child sends is loaded without any class: a lesson naming one is refused whole."""
    import pickle

    from sensorcharts import aggcanvas

    before = {name: len(cache) for name, (cache, _) in aggcanvas._CACHES.items()}
    evil = pickle.dumps([("metrics", ("key",), (1.0, 2.0, 0.5)), ("metrics", ("other",), os.system)])
    with pytest.raises(pickle.UnpicklingError, match="builtin values"):
        aggcanvas.learn(evil)
    assert {name: len(cache) for name, (cache, _) in aggcanvas._CACHES.items()} == before
    assert aggcanvas.learn(pickle.dumps([("metrics", ("key",), (1.0, 2.0, 0.5))])) == 1
    assert aggcanvas._metrics.pop(("key",)) == (1.0, 2.0, 0.5)


# ---------------------------------------------------------------------------------------------------------
# (2) The server exits by itself once idle
# ---------------------------------------------------------------------------------------------------------


def test_server_exits_after_its_idle_timeout_but_not_during_a_job(rig):
    # The server has no setting for the idle timeout: IDLE_EXIT_S (300 s) is a module constant. The test starts
    # the server the way `python -m sensorcharts.warmserver` does, with the constant lowered to 1 s.
    idle_s = 1.0
    path = rig.socket_path()
    release = rig.jobdir / "release"
    started = rig.jobdir / "started.json"
    server, job = rig.serve_with_idle_timeout(
        idle_s, lambda: rig.start("long", {"mode": "wait", "started": str(started), "release": str(release)}))
    where = wait_for(lambda: started.exists() and read_json(started), "the job to start")
    assert where["ppid"] == server.pid  # the job went to this server
    time.sleep(3 * idle_s)  # a job longer than the idle timeout keeps its server
    assert server.poll() is None and listening(path)
    release.touch()
    assert job.wait() == 0, job.stderr

    # Idle now: it exits by itself and takes its socket file with it.
    assert server.wait(timeout=DEADLINE_S) == 0
    assert not path.exists()
    assert not rig.servers()

    # The next job starts a server of its own.
    again = write_job(rig, "again")
    assert again.proc.returncode == 0, again.stderr
    (new,) = rig.servers()
    assert new != server.pid and read_json(rig.jobdir / "out" / "again.where.json")["ppid"] == new
    assert listening(path)


# ---------------------------------------------------------------------------------------------------------
# (3) A socket left by a server that was killed
# ---------------------------------------------------------------------------------------------------------


def test_socket_of_a_killed_server_is_replaced(rig):
    first = write_job(rig, "first")
    assert first.proc.returncode == 0, first.stderr
    (old,) = rig.servers()
    path = rig.socket_path()
    os.kill(old, signal.SIGKILL)
    # Its threads (pyarrow's jemalloc starts one) can outlive the main one, and with them the listener.
    wait_for(lambda: not alive(old) and not listening(path), "the server to die")
    # The socket file stays behind, with nobody listening.
    assert path.exists()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(str(path))

    second = write_job(rig, "second")
    assert second.proc.returncode == 0, second.stderr
    (new,) = rig.servers()
    assert new != old and read_json(rig.jobdir / "out" / "second.where.json")["ppid"] == new
    assert listening(path) and rig.sockets() == [path]


# ---------------------------------------------------------------------------------------------------------
# (4) A client that disappears takes its job with it
# ---------------------------------------------------------------------------------------------------------


class SlowWrite(NamedTuple):
    """A job that writes out/big.dat bit by bit until ``release`` exists, with a process of its own running."""

    job: Client
    where: dict  # what the job says of its process (pid, ppid, pgid, helper) once it started
    partial: Path
    final: Path
    release: Path


def _start_slow_write(rig: Rig, **env: str) -> SlowWrite:
    out = rig.jobdir / "out"
    started, release = rig.jobdir / "started.json", rig.jobdir / "release"
    partial, final = out / ".big.dat.partial", out / "big.dat"
    job = rig.start("big", {"mode": "slow_write", "started": str(started), "release": str(release),
                            "partial": str(partial), "marker": str(rig.runtime)}, output={"data": "out/big.dat"},
                    **env)
    where = wait_for(lambda: started.exists() and read_json(started), "the job to start")
    return SlowWrite(job, where, partial, final, release)


def test_killed_client_kills_its_job_before_it_writes_more(rig):
    job, where, partial, final, release = _start_slow_write(rig)
    (server,) = rig.servers()
    assert where["ppid"] == server and where["pgid"] == where["pid"]  # a process group of its own
    assert alive(where["pid"]) and alive(where["helper"])
    wait_for(lambda: partial.stat().st_size > 200, "the job to write")

    job.proc.kill()  # as kill -9 of Snakemake, or a cancelled cluster job
    job.proc.wait()
    wait_for(lambda: not alive(where["pid"]) and not alive(where["helper"]),
             "the job and the process it started to be killed")
    written = partial.read_bytes()
    release.touch()  # had the job lived on, it would now finish the file and put it in place

    # The server lives on and serves the next job; meanwhile nothing wrote to the dead job's files.
    nxt = write_job(rig, "next")
    assert nxt.proc.returncode == 0, nxt.stderr
    assert list(rig.servers()) == [server]
    assert not final.exists()
    assert partial.read_bytes() == written and not written.endswith(b"end\n")


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "fresh-interpreter"])
def test_ctrl_c_of_the_waiting_side_ends_the_job_at_once(rig, warm):
    """SIGINT of Snakemake's process (Ctrl-C) ends its jobs' processes, though a child of the warm server is
    in no terminal's process group; Snakemake then sees the job as interrupted, not as failed."""
    job, where, partial, final, release = _start_slow_write(rig, **({} if warm else {"SENSORCHARTS_WARM": "0"}))
    assert where["ppid"] != job.proc.pid if warm else where["ppid"] == job.proc.pid
    wait_for(lambda: partial.exists() and partial.stat().st_size > 200, "the job to write")

    job.proc.send_signal(signal.SIGINT)  # to the client only: a warm job's process gets no signal of its own
    assert job.wait() == 130
    # The job's thread ended with KeyboardInterrupt, which Snakemake takes as an interrupted job.
    assert "client interrupted, job interrupted" in job.stderr
    wait_for(lambda: not alive(where["pid"]) and not alive(where["helper"]),
             "the job and the process it started to be killed")
    release.touch()
    assert "failed (exit status" not in job.stderr  # interrupted, not reported as a failure
    assert not final.exists()


def test_a_job_writes_its_benchmark_in_snakemakes_columns(rig):
    """A log entry named ``benchmark`` gets the job process's own resource use (Snakemake's ``benchmark:``
    would measure Snakemake's process, where the run: block only waits)."""
    (rig.jobdir / "in.txt").write_text("input text\n", encoding="utf-8")
    for name, env in (("warm", {}), ("cold", {"SENSORCHARTS_WARM": "0"})):
        job = rig.run(name, {"mode": "write", "numbers": [1]}, input={"data": "in.txt"},
                      output={"result": f"out/{name}.json", "where": f"out/{name}.where.json"},
                      wildcards={"name": name, "date": "2025-06-01"}, **env)
        # Every rig job's log names "logs/<name>.log" and, as `benchmark`, "bench/<name>.tsv".
        assert job.proc.returncode == 0, job.stderr
    failed = rig.start("failed", {"mode": "fail", "reason": "no benchmark"})
    assert failed.wait() == 1
    for name in ("warm", "cold"):
        header, row = (rig.jobdir / "bench" / f"{name}.tsv").read_text().splitlines()
        assert header.split("\t") == ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
                                       "mean_load", "cpu_time"]
        values = dict(zip(header.split("\t"), row.split("\t")))
        assert 0 < float(values["s"]) < DEADLINE_S and values["h:m:s"].count(":") == 2
        assert float(values["max_rss"]) > 10  # MB: a Python process with its imports
        assert float(values["cpu_time"]) > 0 and float(values["io_out"]) >= 0
    assert not (rig.jobdir / "bench" / "failed.tsv").exists()  # as Snakemake: no benchmark of a failed job


# ---------------------------------------------------------------------------------------------------------
# (5) SENSORCHARTS_WARM=0
# ---------------------------------------------------------------------------------------------------------


def test_warm_off_runs_the_job_in_its_own_process_and_starts_no_server(rig):
    local = write_job(rig, "local", SENSORCHARTS_WARM="0")
    assert local.proc.returncode == 0, local.stderr
    where = read_json(rig.jobdir / "out" / "local.where.json")
    assert where["ppid"] == local.proc.pid and not where["pandas_loaded"]
    assert list(rig.runtime.iterdir()) == []  # no socket, no lock file
    assert not processes_naming(str(rig.runtime))


def test_unreachable_server_falls_back_to_a_fresh_interpreter(rig):
    # A runtime folder so deep that its socket path exceeds what Unix sockets allow (~107 bytes).
    deep = rig.runtime / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    local = write_job(rig, "deep", XDG_RUNTIME_DIR=str(deep))
    assert local.proc.returncode == 0, local.stderr
    assert "probe: running in a process of its own (cannot reach" in local.stderr
    where = read_json(rig.jobdir / "out" / "deep.where.json")
    assert where["ppid"] == local.proc.pid  # ran in a fresh interpreter, and still did the job
    assert read_json(rig.jobdir / "out" / "deep.json")
    assert not rig.servers()


@pytest.mark.parametrize("value, expected", [
    ("0", False), ("false", False), (" Off ", False), ("NO", False), ("1", True), ("", True), ("yes", True),
])
def test_enabled_reads_sensorcharts_warm(monkeypatch, value, expected):
    from sensorcharts import warm

    monkeypatch.setenv("SENSORCHARTS_WARM", value)
    assert warm.enabled() is expected
    monkeypatch.delenv("SENSORCHARTS_WARM")
    assert warm.enabled() is True


# ---------------------------------------------------------------------------------------------------------
# (5b) Started early, while Snakemake builds the DAG
# ---------------------------------------------------------------------------------------------------------


def _start_early(rig: Rig) -> None:
    subprocess.run([sys.executable, "-c", "from sensorcharts import warm; warm.start_early()"], env=rig.env(),
                   cwd=rig.jobdir, check=True, timeout=DEADLINE_S)


def test_a_server_started_early_takes_the_first_jobs(rig):
    """start_early returns at once and hands the start lock to the server: a job that arrives while it still
    imports waits for it instead of starting a second server, and a second early start does nothing."""
    import fcntl

    _start_early(rig)
    _start_early(rig)
    first = write_job(rig, "first")
    assert first.proc.returncode == 0, first.stderr
    (server,) = rig.servers()
    assert read_json(rig.jobdir / "out" / "first.where.json")["ppid"] == server
    assert rig.servers()[server].split()[-1].isdigit()  # started by start_early (it passes the lock's fd)
    # Listening, the server has let the lock go.
    with open(f"{rig.socket_path()}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _start_early(rig)
    assert list(rig.servers()) == [server]


def test_snakemake_starts_the_server_while_building_the_dag_of_a_real_run_only(sqlite_db, tmp_path):
    """New fingerprints (extracts to run) start the server early in a run, never in a dry-run."""
    sqlite_db.insert([(utc(2025, 6, 1, h, 0), "temperature", 20.0 + h, "dev-1") for h in range(24)])
    runtime = Path(tempfile.mkdtemp(prefix="scw-", dir="/tmp"))
    try:
        wd = Workdir(tmp_path / "wd", sqlite_db.url, env={"XDG_RUNTIME_DIR": str(runtime)}, start="2025-06-01",
                     end="2025-06-01", timezone="UTC", cumulative_days=1, now="2025-06-03T00:00:00+00:00")
        assert "extract_day" in wd.snakemake("-n").output
        assert list((wd.path / "results" / "fingerprints").glob("*.txt"))  # written by the dry-run's DAG
        assert not processes_naming(str(runtime)) and not list(runtime.rglob("*.sock"))

        (wd.path / "results" / "fingerprints").rename(wd.path / "fingerprints-of-the-dry-run")
        wd.snakemake("--cores", "2")
        servers = [cmd for cmd in processes_naming(str(runtime)).values() if cmd.split()[-1].isdigit()]
        assert len(servers) == 1, processes_naming(str(runtime))  # the one start_early started, with its lock fd
        assert len(list(runtime.rglob("*.sock"))) == 1
    finally:
        stop_processes_naming(runtime)
        wait_for(lambda: not processes_naming(str(runtime)), "the server to stop", timeout=30)
        shutil.rmtree(runtime, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# (6) Changed code gets a server of its own
# ---------------------------------------------------------------------------------------------------------


def test_changed_code_is_served_by_a_new_server(rig):
    # A copy of the workflow's scripts and package, whose preloaded module sensorcharts.cid the test edits.
    code = rig.root / "code" / "scripts"
    (code / "sensorcharts").mkdir(parents=True)
    for source in [*SCRIPTS.glob("*.py"), *(SCRIPTS / "sensorcharts").glob("*.py")]:
        shutil.copyfile(source, code / source.relative_to(SCRIPTS))
    rig.pythonpath[0] = code
    cid = code / "sensorcharts" / "cid.py"
    original = cid.read_text(encoding="utf-8")

    def version(name: str, tag: str) -> dict:
        cid.write_text(original + f"\nWARM_TEST_VERSION = {tag!r}\n", encoding="utf-8")
        job = rig.run(name, {"mode": "version"}, output={"result": f"out/{name}.json"})
        assert job.proc.returncode == 0, job.stderr
        return read_json(rig.jobdir / "out" / f"{name}.json")

    v1 = version("v1", "v1")
    assert v1["version"] == "v1" and v1["cid_file"] == str(cid)
    (s1,) = rig.servers()
    (p1,) = rig.sockets()
    # Server 1 has the old cid imported: a job that reached it would report v1.
    v2 = version("v2", "v2")
    assert v2["version"] == "v2"
    servers = rig.servers()
    assert s1 in servers and len(servers) == 2 and v2["ppid"] != s1 and v2["ppid"] in servers
    assert len(rig.sockets()) == 2 and p1 in rig.sockets()
    assert str(p1) in servers[s1] and str(p1) not in servers[v2["ppid"]]
    # The code as it was again: the first server's, which is still there.
    back = version("back", "v1")
    assert back["version"] == "v1" and back["ppid"] == s1 and len(rig.servers()) == 2


# ---------------------------------------------------------------------------------------------------------
# Malformed connections and exits
# ---------------------------------------------------------------------------------------------------------


def test_connection_closed_before_its_request_does_not_stop_the_server(rig):
    started, release = rig.jobdir / "started.json", rig.jobdir / "release"
    job = rig.start("long", {"mode": "wait", "started": str(started), "release": str(release)})
    where = wait_for(lambda: started.exists() and read_json(started), "the job to start")
    (server,) = rig.servers()
    # A client that connects and goes away before sending anything: a job killed right after connecting,
    # or any program checking whether the socket answers.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bare:
        bare.connect(str(rig.socket_path()))
    release.touch()
    try:
        assert job.wait() == 0, job.stderr
        assert alive(server)
    finally:
        wait_for(lambda: not alive(where["pid"]), "the job to end")


@pytest.mark.parametrize("code", [0, 3])
def test_sys_exit_in_a_job_gives_the_in_process_status(rig, code):
    local = rig.run("local", {"mode": "sys_exit", "code": code}, SENSORCHARTS_WARM="0")
    assert local.proc.returncode == code
    warm = rig.run("warm", {"mode": "sys_exit", "code": code})
    assert warm.proc.returncode == code, warm.stderr


# ---------------------------------------------------------------------------------------------------------
# (7) Another checkout, other libraries, a deleted checkout
# ---------------------------------------------------------------------------------------------------------


def _clone_scripts(rig: Rig, where: Path, with_probe: bool = False) -> Path:
    """A copy of the workflow's scripts folder at ``where``, as a clone has (and the probe script in it, as a
    workflow script of the clone's own)."""
    (where / "sensorcharts").mkdir(parents=True)
    for source in [*SCRIPTS.glob("*.py"), *(SCRIPTS / "sensorcharts").glob("*.py")]:
        shutil.copyfile(source, where / source.relative_to(SCRIPTS))
    if with_probe:
        shutil.copyfile(rig.root / "probe" / "warm_probe.py", where / "warm_probe.py")
    return where


def test_another_checkout_or_other_installed_libraries_get_a_server_of_their_own(rig):
    """The same code in another place (a second clone of one commit), or the same code with another version of
    an installed distribution (``pip install -U``), is served by another server."""
    here = write_job(rig, "here")
    assert here.proc.returncode == 0, here.stderr
    (first,) = rig.servers()
    rig.pythonpath[0] = _clone_scripts(rig, rig.root / "clone" / "scripts")
    there = write_job(rig, "there")
    assert there.proc.returncode == 0, there.stderr
    second = read_json(rig.jobdir / "out" / "there.where.json")["ppid"]
    assert second != first and set(rig.servers()) == {first, second}

    # An installed distribution as an installer leaves it: a <name>-<version>.dist-info folder on sys.path.
    site = rig.root / "site"
    dist = site / "warm_probe_dist-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: warm-probe-dist\nVersion: 1.0\n")
    paths = {rig.socket_path()}
    rig.pythonpath.append(site)
    paths.add(rig.socket_path())
    dist.rename(site / "warm_probe_dist-1.1.dist-info")  # as an upgrade does
    paths.add(rig.socket_path())
    assert len(paths) == 3
    upgraded = write_job(rig, "upgraded")
    assert upgraded.proc.returncode == 0, upgraded.stderr
    assert read_json(rig.jobdir / "out" / "upgraded.where.json")["ppid"] not in (first, second)


def test_a_server_whose_checkout_is_deleted_exits_and_a_new_clone_there_is_served(rig):
    """A fresh clone in the place of a deleted one (CI, a redeployment) has the same code in the same place:
    the old server's modules are gone with their folder, so it stops at once instead of taking its jobs."""
    clone = rig.root / "clone"
    rig.pythonpath = [_clone_scripts(rig, clone / "scripts", with_probe=True)]
    first = rig.run("first", {"mode": "version"}, output={"result": "out/first.json"})
    assert first.proc.returncode == 0, first.stderr
    (old,) = rig.servers()
    shutil.rmtree(clone)
    _clone_scripts(rig, clone / "scripts", with_probe=True)
    wait_for(lambda: not alive(old), "the server of the deleted checkout to exit", timeout=30)
    again = rig.run("again", {"mode": "version"}, output={"result": "out/again.json"})
    assert again.proc.returncode == 0, again.stderr
    assert read_json(rig.jobdir / "out" / "again.json")["cid_file"] == str(clone / "scripts/sensorcharts/cid.py")


# A job's process running failing jobs back to back until the server that took its first job (its pid is
# written to argv[1] once the server listens) has exited; prints how many failed.
FAILING_LOOP = textwrap.dedent(
    """
    import json
    import sys
    import time
    from pathlib import Path

    from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, Wildcards

    from sensorcharts.jobs import StepFailed, run_step

    pid_file, deadline = Path(sys.argv[1]), time.monotonic() + float(sys.argv[2])


    def fail_once():
        try:
            run_step("warm_probe", "probe", InputFiles(), OutputFiles(),
                     Params(fromdict={"mode": "fail", "reason": "x"}), Wildcards(),
                     Log(fromdict={"log": "logs/loop.log"}), {})
        except StepFailed:
            return 1
        return 0


    def server_alive():
        try:
            with open(f"/proc/{server}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
        except OSError:
            return False


    failed = fail_once()
    while not pid_file.exists():
        time.sleep(0.05)
    server = int(pid_file.read_text())
    while server_alive() and time.monotonic() < deadline:
        failed += fail_once()
    print(json.dumps({"failed": failed, "server_alive": server_alive()}))
    """
)


def test_failing_jobs_do_not_keep_a_server_from_idling_out(rig):
    """A server that fails every job (say, modules it can no longer import) must still go away by itself:
    only a job that succeeds counts as activity."""
    loop, pid_file = rig.root / "failing_loop.py", rig.root / "server.pid"
    loop.write_text(FAILING_LOOP, encoding="utf-8")
    server, jobs = rig.serve_with_idle_timeout(2.0, lambda: subprocess.Popen(
        [sys.executable, str(loop), str(pid_file), str(DEADLINE_S)], cwd=rig.jobdir, env=rig.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    rig.own.append(jobs)
    pid_file.write_text(str(server.pid))
    out, err = jobs.communicate(timeout=2 * DEADLINE_S)
    assert jobs.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["failed"] > 1 and not result["server_alive"], result
    assert server.wait(timeout=DEADLINE_S) == 0


# ---------------------------------------------------------------------------------------------------------
# (8) Stopping the server, and a server that ends a connection before taking its job
# ---------------------------------------------------------------------------------------------------------


def test_stopping_the_server_stops_its_jobs(rig):
    job, where, _, final, release = _start_slow_write(rig)
    (server,) = rig.servers()
    os.kill(server, signal.SIGTERM)  # as systemd, a cluster's epilogue or an operator stops it
    wait_for(lambda: not alive(where["pid"]) and not alive(where["helper"]),
             "the job and the process it started to be stopped", timeout=30)
    release.touch()
    assert job.wait() == 1
    assert "probe: the warm job server stopped during the job" in job.stderr
    wait_for(lambda: not alive(server), "the server to exit")
    assert not final.exists() and not rig.sockets()


def test_a_connection_the_server_ends_before_taking_the_job_falls_back(rig):
    """What a job meets when it reaches a server in the moment it exits (idle, stopped, or its checkout
    gone): the connection ends before the job is taken. Nothing ran, so the job runs in a fresh interpreter."""
    path = rig.socket_path()
    path.parent.mkdir(mode=0o700, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as exiting:
        exiting.bind(str(path))
        exiting.listen()
        job = _start_write_job(rig, "job")
        conn, _ = exiting.accept()
        with conn:  # the whole request arrives, then the connection ends without an answer
            head, fds, _, _ = socket.recv_fds(conn, 8, 2)
            for fd in fds:
                os.close(fd)
            size, body = int.from_bytes(head, "big"), b""
            while len(body) < size:
                body += conn.recv(size - len(body))
    assert job.wait() == 0, job.stderr
    assert [line for line in job.stderr.splitlines() if "running in a process of its own" in line]
    assert read_json(rig.jobdir / "out" / "job.where.json")["ppid"] == job.proc.pid
    assert read_json(rig.jobdir / "out" / "job.json")["input"] == "input text\n"


def _start_write_job(rig: Rig, name: str, **env: str) -> Client:
    (rig.jobdir / "in.txt").write_text("input text\n", encoding="utf-8")
    return rig.start(name, {"mode": "write", "numbers": [1]}, input={"data": "in.txt"},
                     output={"result": f"out/{name}.json", "where": f"out/{name}.where.json"},
                     wildcards={"name": name, "date": "2025-06-01"}, **env)


def test_a_runtime_folder_that_does_not_exist_costs_only_the_warm_start(rig):
    """An XDG_RUNTIME_DIR exported from a cluster's login node need not exist on the node that runs the job."""
    job = write_job(rig, "job", XDG_RUNTIME_DIR=str(rig.runtime / "run" / "user" / "4242"))
    assert job.proc.returncode == 0, job.stderr
    assert len([line for line in job.stderr.splitlines() if "running in a process of its own" in line]) == 1
    assert read_json(rig.jobdir / "out" / "job.where.json")["ppid"] == job.proc.pid
    assert not rig.servers()


# ---------------------------------------------------------------------------------------------------------
# (9) A served job's process has the job's umask and time zone
# ---------------------------------------------------------------------------------------------------------


def test_a_served_job_takes_the_jobs_umask_and_time_zone(rig):
    # A POSIX TZ rule, so that no time zone database is needed: UTC+05:30, abbreviated XST.
    first = rig.run("first", {"mode": "process"}, output={"result": "out/first.json"}, umask=0o022, TZ="UTC")
    assert first.proc.returncode == 0, first.stderr
    (server,) = rig.servers()
    results = {}
    for name, env in (("cold", {"SENSORCHARTS_WARM": "0"}), ("warm", {})):
        job = rig.run(name, {"mode": "process"}, output={"result": f"out/{name}.json"}, umask=0o027,
                      TZ="XST-5:30", **env)
        assert job.proc.returncode == 0, job.stderr
        results[name] = read_json(rig.jobdir / "out" / f"{name}.json")
    assert results["warm"]["ppid"] == server
    for result in results.values():
        assert (result["umask"], result["made_mode"]) == (0o027, 0o640)
        assert (result["utcoffset"], result["tzname"][0]) == ("+0530", "XST")
    first = read_json(rig.jobdir / "out" / "first.json")
    assert (first["umask"], first["utcoffset"]) == (0o022, "+0000")
