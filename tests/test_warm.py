"""The warm fork server (sensorcharts/warm.py) and how ``sensorcharts.jobs.run_step`` hands it jobs.

Every test runs real job clients, ``python`` processes that build Snakemake's own containers and call
``sensorcharts.jobs.run_step`` as a rule's ``run:`` block does, against real servers on real Unix sockets. Nothing of
the project is mocked. Each test gets a short runtime folder of its own (``XDG_RUNTIME_DIR`` and ``TMPDIR``,
where warm.py puts its sockets), so it never meets a server of another run on the machine, and a finalizer
kills every process whose command line names that folder: the servers, the jobs they fork (a fork keeps
its server's command line) and the processes those jobs start. Waits poll a condition against a generous
deadline; nothing asserts on how long something took.
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

import pytest
from conftest import utc

from workflow_runner import Workdir, stop_processes_naming

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
DEADLINE_S = 90.0  # generous: a server imports pandas, pyarrow, … on a busy 2-core machine

# A rule's `run:` block in miniature, as Snakemake runs one: sensorcharts.jobs.run_step in a worker thread
# with Snakemake's own containers, the main thread waiting for it; on Ctrl-C the main thread stops waiting
# for new work but still joins the worker (Snakemake's executor shuts its thread pool down). The client's
# exit status is the job's (StepFailed carries it), or 130 when interrupted.
CLIENT = textwrap.dedent(
    '''
    import json
    import signal
    import sys
    import threading
    import time

    from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, Wildcards

    from sensorcharts.jobs import StepFailed, run_step, stop_jobs_on_interrupt

    with open(sys.argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    # Ctrl-C as in a terminal, whatever pytest inherited (a shell's background job ignores SIGINT, and so
    # would this client, since stop_jobs_on_interrupt leaves an ignored SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stop_jobs_on_interrupt()
    result = {}
    done = threading.Event()


    def job():
        try:
            run_step(spec["script"], spec["rule"], InputFiles(fromdict=spec["input"]),
                     OutputFiles(fromdict=spec["output"]), Params(fromdict=spec["params"]),
                     Wildcards(fromdict=spec["wildcards"]), Log(fromdict=spec["log"]), spec["config"])
            result["status"] = 0
        except StepFailed as exc:
            print(exc, file=sys.stderr)
            result["status"] = exc.status
        except KeyboardInterrupt:
            result["status"] = "interrupted"
        finally:
            done.set()


    worker = threading.Thread(target=job)
    worker.start()
    try:
        # Snakemake's scheduler loop. Not worker.is_alive() nor join(): a KeyboardInterrupt raised inside
        # either can leave the thread's lock taken, and the join below would then wait forever.
        while not done.is_set():
            time.sleep(0.05)
    except KeyboardInterrupt:
        worker.join()
        print(f"client interrupted, job {result.get('status')}", file=sys.stderr)
        sys.exit(130)
    sys.exit(result["status"])
    '''
)

# A workflow script for these tests (on the clients' and so the servers' PYTHONPATH); params.mode says
# what it does.
PROBE = textwrap.dedent(
    '''
    """A workflow script for the warm server's tests."""

    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from sensorcharts.jobs import log, write_json_atomic


    def _wait_for(path):
        while not Path(path).exists():
            time.sleep(0.05)


    def main(snakemake):
        mode = snakemake.params.mode
        log.info("probe %s starting", mode)
        print(f"stdout of {snakemake.wildcards.name}", flush=True)
        print(f"stderr of {snakemake.wildcards.name}", file=sys.stderr, flush=True)
        where = {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0),
                 "pandas_loaded": "pandas" in sys.modules}
        if mode == "write":
            result = {
                "input": Path(snakemake.input.data).read_text(encoding="utf-8"),
                "inputs": list(snakemake.input), "outputs": list(snakemake.output),
                "params": {"mode": snakemake.params.mode, "numbers": snakemake.params.numbers},
                "wildcards": [snakemake.wildcards.name, snakemake.wildcards.date],
                "rule": snakemake.rule, "config": snakemake.config, "cwd": os.getcwd(),
                "env": os.environ.get("WARM_PROBE_VALUE"), "log": list(snakemake.log),
            }
            write_json_atomic(result, snakemake.output.result)
            write_json_atomic(where, snakemake.output.where)
        elif mode == "fail":
            raise RuntimeError(f"probe failed on purpose: {snakemake.params.reason}")
        elif mode == "hard_exit":
            os._exit(int(snakemake.params.code))
        elif mode == "sys_exit":
            sys.exit(int(snakemake.params.code))
        elif mode == "wait":  # started, then wait for the release file, then the output
            write_json_atomic(where, snakemake.params.started)
            _wait_for(snakemake.params.release)
            write_json_atomic(where, snakemake.output[0])
        elif mode == "slow_write":  # write the output bit by bit until released, a process of its own too
            sleeper = [sys.executable, "-c", "import time; time.sleep(600)", snakemake.params.marker]
            helper = subprocess.Popen(sleeper)
            partial = Path(snakemake.params.partial)
            with open(partial, "w", encoding="utf-8") as out:
                out.write("begin\\n")
                out.flush()
                write_json_atomic(dict(where, helper=helper.pid), snakemake.params.started)
                while not Path(snakemake.params.release).exists():
                    out.write("x" * 64 + "\\n")
                    out.flush()
                    time.sleep(0.05)
                out.write("end\\n")
            os.replace(partial, snakemake.output[0])
            helper.kill()
        elif mode == "version":
            from sensorcharts import cid

            write_json_atomic(dict(where, version=getattr(cid, "WARM_TEST_VERSION", None), cid_file=cid.__file__),
                              snakemake.output[0])
        else:
            raise ValueError(f"unknown probe mode {mode!r}")
        log.info("probe %s done", mode)
    '''
)


# ---------------------------------------------------------------------------------------------------------
# Processes, sockets and waiting
# ---------------------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """``(state, ppid, pgrp, session)`` of process ``pid``, or None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def processes_naming(text: str, where: str = "cmdline") -> dict[int, str]:
    """Live processes (not this one) whose command line (or ``where="environ"``: environment) contains
    ``text``: ``{pid: that text}``."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            content = Path(entry.path, where).read_bytes()
        except OSError:
            continue
        if text.encode() in content and alive(int(entry.name)):
            found[int(entry.name)] = content.replace(b"\0", b" ").decode(errors="replace")
    return found


def listening(path: str | Path) -> bool:
    """Whether a Unix socket bound at ``path`` is listening (``/proc/net/unix``; connecting is not needed)."""
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7] == str(path) and int(parts[3], 16) & 0x10000:  # __SO_ACCEPTCON
            return True
    return False


def wait_for(condition, what: str, timeout: float = DEADLINE_S):
    """Poll ``condition`` until it returns something true, and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


class Client:
    """One job's process (a client of the warm server, or the job itself with the server off)."""

    def __init__(self, proc: subprocess.Popen, name: str, folder: Path, log: Path):
        self.proc, self.name, self.log = proc, name, log
        self.out, self.err = folder / f"{name}.stdout", folder / f"{name}.stderr"

    def wait(self) -> int:
        return self.proc.wait(timeout=DEADLINE_S)

    @property
    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8")


class Rig:
    """Job clients of one test, their runtime folder, and the cleanup of every process they led to."""

    def __init__(self, root: Path):
        self.root = root
        # Short, since Unix socket paths are limited to ~107 bytes (pytest's tmp_path can be longer).
        self.runtime = Path(tempfile.mkdtemp(prefix="scw-", dir="/tmp"))
        self.jobdir = root / "job"
        (self.jobdir / "logs").mkdir(parents=True)
        (self.jobdir / "out").mkdir()
        self.clients_dir = root / "clients"
        self.clients_dir.mkdir()
        probe_dir = root / "probe"
        probe_dir.mkdir()
        (probe_dir / "warm_probe.py").write_text(PROBE, encoding="utf-8")
        self.client_py = root / "client.py"
        self.client_py.write_text(CLIENT, encoding="utf-8")
        self.pythonpath = [SCRIPTS, probe_dir]
        self.clients: list[Client] = []
        self.own: list[subprocess.Popen] = []  # servers the test started itself

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("SENSORCHARTS_WARM", "DATABASE_URL", "PYTHONPATH", "WARM_PROBE_VALUE")}
        env.update(XDG_RUNTIME_DIR=str(self.runtime), TMPDIR=str(self.runtime), MPLBACKEND="Agg",
                   PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=os.pathsep.join(map(str, self.pythonpath)))
        env.update(extra)
        return env

    def start(self, name: str, params: dict, *, script: str = "warm_probe", rule: str = "probe",
              output: dict | None = None, input: dict | None = None, wildcards: dict | None = None,
              config: dict | None = None, **env: str) -> Client:
        spec = {"script": script, "rule": rule, "input": input or {},
                "output": output if output is not None else {"result": f"out/{name}.json"},
                "log": {"log": f"logs/{name}.log", "benchmark": f"bench/{name}.tsv"}, "params": params,
                "wildcards": wildcards if wildcards is not None else {"name": name}, "config": config or {}}
        spec_path = self.clients_dir / f"{name}.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        folder = self.clients_dir
        with open(folder / f"{name}.stdout", "w") as out, open(folder / f"{name}.stderr", "w") as err:
            proc = subprocess.Popen([sys.executable, str(self.client_py), str(spec_path)], cwd=self.jobdir,
                                    env=self.env(**env), stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        client = Client(proc, name, self.clients_dir, self.jobdir / "logs" / f"{name}.log")
        self.clients.append(client)
        return client

    def run(self, name: str, params: dict, **kwargs) -> Client:
        client = self.start(name, params, **kwargs)
        client.wait()
        return client

    def socket_path(self) -> Path:
        """The socket a job of this rig's code and environment uses (asked of warm.py in a job's environment)."""
        out = subprocess.run([sys.executable, "-c", "from sensorcharts import warm; print(warm.socket_path())"],
                             env=self.env(), capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())

    def sockets(self) -> list[Path]:
        return sorted(self.runtime.glob("*.sock"))

    def servers(self) -> dict[int, str]:
        """Live warm servers of this test: session leaders naming the runtime folder (their jobs are not)."""
        return {pid: cmd for pid, cmd in processes_naming(str(self.runtime)).items()
                if (_stat(pid) or (None, 0, 0, 0))[3] == pid}

    def serve_with_idle_timeout(self, idle_s: float) -> subprocess.Popen:
        """Start a server as ``python -m sensorcharts.warm`` does, with ``IDLE_EXIT_S`` set to ``idle_s``."""
        path = self.socket_path()
        code = ("import signal, sys\n"
                "from sensorcharts import warm\n"
                "warm.IDLE_EXIT_S = float(sys.argv[2])\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "warm.serve(sys.argv[1])\n")
        env = self.env()
        proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(idle_s)], cwd="/", env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL)
        self.own.append(proc)
        wait_for(lambda: listening(path) or proc.poll() is not None, "the server to listen")
        assert proc.poll() is None, "the server exited while starting"
        return proc

    def close(self) -> None:
        for client in self.clients:
            if client.proc.poll() is None:
                client.proc.kill()
            client.proc.wait()
        for proc in self.own:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        # Also jobs in fresh interpreters (python -m sensorcharts.jobs), named only in their environment.
        for pid in [*processes_naming(str(self.runtime)), *processes_naming(str(self.runtime), "environ")]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            wait_for(lambda: not processes_naming(str(self.runtime)), "the test's processes to end", timeout=30)
        finally:
            shutil.rmtree(self.runtime, ignore_errors=True)


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    try:
        yield rig
    finally:
        rig.close()


def _write_job(rig: Rig, name: str, **env: str) -> Client:
    (rig.jobdir / "in.txt").write_text("input text\n", encoding="utf-8")
    return rig.run(name, {"mode": "write", "numbers": [1, 2.5, None]}, input={"data": "in.txt"},
                   output={"result": f"out/{name}.json", "where": f"out/{name}.where.json"},
                   wildcards={"name": "same", "date": "2025-06-01"},
                   config={"timezone": "UTC", "nested": {"a": [1, 2]}}, **env)


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------
# (1) A job through the server behaves as the job run in its own interpreter
# ---------------------------------------------------------------------------------------------------------


def test_job_through_server_gives_the_in_process_result(rig):
    local = _write_job(rig, "local", SENSORCHARTS_WARM="0", WARM_PROBE_VALUE="first")
    warm = _write_job(rig, "warm", WARM_PROBE_VALUE="first")
    assert (local.proc.returncode, warm.proc.returncode) == (0, 0), warm.stderr

    out = rig.jobdir / "out"
    local_result, warm_result = _json(out / "local.json"), _json(out / "warm.json")
    # The same job object, working directory, environment, … apart from the job's own file names.
    assert warm_result.pop("outputs") == ["out/warm.json", "out/warm.where.json"]
    assert local_result.pop("outputs") == ["out/local.json", "out/local.where.json"]
    assert warm_result.pop("log") == ["logs/warm.log", "bench/warm.tsv"]
    assert local_result.pop("log") == ["logs/local.log", "bench/local.tsv"]
    assert warm_result == local_result
    assert warm_result["cwd"] == str(rig.jobdir)

    # Where each ran: the local job in a fresh interpreter started by the client, the warm one in a child
    # of the server, which had imported pandas already.
    local_where, warm_where = _json(out / "local.where.json"), _json(out / "warm.where.json")
    assert local_where["ppid"] == local.proc.pid and not local_where["pandas_loaded"]
    (server,) = rig.servers()
    assert warm_where["ppid"] == server and warm_where["pid"] != warm.proc.pid and warm_where["pandas_loaded"]
    # The job's stdout, stderr and log are the client's.
    for client in (local, warm):
        assert "stdout of same" in client.stdout
        assert "stderr of same" in client.stderr
        assert "probe write starting" in client.log.read_text() and "probe write done" in client.log.read_text()

    # The next job reuses the server, yet sees its own environment, not the one the server started with.
    again = _write_job(rig, "again", WARM_PROBE_VALUE="second")
    assert again.proc.returncode == 0, again.stderr
    assert _json(out / "again.json")["env"] == "second"
    assert _json(out / "again.where.json")["ppid"] == server
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


# What a served job imports beyond what warm.preload() gave the server: one day's jobs, run in a process that
# did what the server does first; the names go to stdout as JSON.
IMPORTS_PROBE = textwrap.dedent(
    """
    import json
    import sys

    from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, Wildcards

    import extract_day, render_cumulative, render_day  # the scripts: imported by run_main in the child
    from sensorcharts import warm
    from sensorcharts.jobs import Job, describe

    jobs = [(spec["script"], Job(describe(spec["rule"], InputFiles(fromdict=spec["input"]),
                                          OutputFiles(fromdict=spec["output"]), Params(fromdict=spec["params"]),
                                          Wildcards(fromdict=spec["wildcards"]), Log(), spec["config"])))
            for spec in json.load(open(sys.argv[1]))]
    warm.preload()
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


# ---------------------------------------------------------------------------------------------------------
# (2) The server exits by itself once idle
# ---------------------------------------------------------------------------------------------------------


def test_server_exits_after_its_idle_timeout_but_not_during_a_job(rig):
    # warm.py has no setting for the idle timeout: IDLE_EXIT_S (300 s) is a module constant. The test starts
    # the server the way `python -m sensorcharts.warm` does, with the constant lowered to 1 s.
    idle_s = 1.0
    server = rig.serve_with_idle_timeout(idle_s)
    path = rig.socket_path()

    release = rig.jobdir / "release"
    started = rig.jobdir / "started.json"
    job = rig.start("long", {"mode": "wait", "started": str(started), "release": str(release)})
    where = wait_for(lambda: started.exists() and _json(started), "the job to start")
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
    again = _write_job(rig, "again")
    assert again.proc.returncode == 0, again.stderr
    (new,) = rig.servers()
    assert new != server.pid and _json(rig.jobdir / "out" / "again.where.json")["ppid"] == new
    assert listening(path)


# ---------------------------------------------------------------------------------------------------------
# (3) A socket left by a server that was killed
# ---------------------------------------------------------------------------------------------------------


def test_socket_of_a_killed_server_is_replaced(rig):
    first = _write_job(rig, "first")
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

    second = _write_job(rig, "second")
    assert second.proc.returncode == 0, second.stderr
    (new,) = rig.servers()
    assert new != old and _json(rig.jobdir / "out" / "second.where.json")["ppid"] == new
    assert listening(path) and rig.sockets() == [path]


# ---------------------------------------------------------------------------------------------------------
# (4) A client that disappears takes its job with it
# ---------------------------------------------------------------------------------------------------------


def test_killed_client_kills_its_job_before_it_writes_more(rig):
    out = rig.jobdir / "out"
    started, release = rig.jobdir / "started.json", rig.jobdir / "release"
    partial, final = out / ".big.dat.partial", out / "big.dat"
    job = rig.start("big", {"mode": "slow_write", "started": str(started), "release": str(release),
                            "partial": str(partial), "marker": str(rig.runtime)}, output={"data": "out/big.dat"})
    where = wait_for(lambda: started.exists() and _json(started), "the job to start")
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
    nxt = _write_job(rig, "next")
    assert nxt.proc.returncode == 0, nxt.stderr
    assert list(rig.servers()) == [server]
    assert not final.exists()
    assert partial.read_bytes() == written and not written.endswith(b"end\n")


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "fresh-interpreter"])
def test_ctrl_c_of_the_waiting_side_ends_the_job_at_once(rig, warm):
    """SIGINT of Snakemake's process (Ctrl-C) ends its jobs' processes, though a child of the warm server is
    in no terminal's process group; Snakemake then sees the job as interrupted, not as failed."""
    env = {} if warm else {"SENSORCHARTS_WARM": "0"}
    out = rig.jobdir / "out"
    started, release = rig.jobdir / "started.json", rig.jobdir / "release"
    partial, final = out / ".big.dat.partial", out / "big.dat"
    job = rig.start("big", {"mode": "slow_write", "started": str(started), "release": str(release),
                            "partial": str(partial), "marker": str(rig.runtime)}, output={"data": "out/big.dat"},
                    **env)
    where = wait_for(lambda: started.exists() and _json(started), "the job to start")
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
    local = _write_job(rig, "local", SENSORCHARTS_WARM="0")
    assert local.proc.returncode == 0, local.stderr
    where = _json(rig.jobdir / "out" / "local.where.json")
    assert where["ppid"] == local.proc.pid and not where["pandas_loaded"]
    assert list(rig.runtime.iterdir()) == []  # no socket, no lock file
    assert not processes_naming(str(rig.runtime))


def test_unreachable_server_falls_back_to_a_fresh_interpreter(rig):
    # A runtime folder so deep that its socket path exceeds what Unix sockets allow (~107 bytes).
    deep = rig.runtime / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    local = _write_job(rig, "deep", XDG_RUNTIME_DIR=str(deep))
    assert local.proc.returncode == 0, local.stderr
    assert "probe: running in a process of its own (cannot reach" in local.stderr
    where = _json(rig.jobdir / "out" / "deep.where.json")
    assert where["ppid"] == local.proc.pid  # ran in a fresh interpreter, and still did the job
    assert _json(rig.jobdir / "out" / "deep.json")
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
    first = _write_job(rig, "first")
    assert first.proc.returncode == 0, first.stderr
    (server,) = rig.servers()
    assert _json(rig.jobdir / "out" / "first.where.json")["ppid"] == server
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
        assert not processes_naming(str(runtime)) and not list(runtime.glob("*.sock"))

        (wd.path / "results" / "fingerprints").rename(wd.path / "fingerprints-of-the-dry-run")
        wd.snakemake("--cores", "2")
        servers = [cmd for cmd in processes_naming(str(runtime)).values() if cmd.split()[-1].isdigit()]
        assert len(servers) == 1, processes_naming(str(runtime))  # the one start_early started, with its lock fd
        assert len(list(runtime.glob("*.sock"))) == 1
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
        return _json(rig.jobdir / "out" / f"{name}.json")

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
    where = wait_for(lambda: started.exists() and _json(started), "the job to start")
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
