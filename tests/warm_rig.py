"""A rig for tests of the warm job server (sensorcharts/warm.py): real job clients, a probe workflow script,
and the cleanup of every process a test led to.

Every job client is a real ``python`` process that builds Snakemake's own containers and calls
``sensorcharts.jobs.run_step`` as a rule's ``run:`` block does, against real servers on real Unix sockets.
Nothing of the project is mocked. Each rig has a short runtime folder of its own (``XDG_RUNTIME_DIR`` and
``TMPDIR``, under which warm.py keeps its sockets), so it never meets a server of another run on the machine,
and its cleanup kills every process whose command line names that folder: the servers, the jobs they fork (a
fork keeps its server's command line) and the processes those jobs start. Waits poll a condition against a
generous deadline; nothing asserts on how long something took.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

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

    from sensorcharts import atomic, log


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
            atomic.write_json(snakemake.output.result, result)
            atomic.write_json(snakemake.output.where, where)
        elif mode == "fail":
            raise RuntimeError(f"probe failed on purpose: {snakemake.params.reason}")
        elif mode == "hard_exit":
            os._exit(int(snakemake.params.code))
        elif mode == "sys_exit":
            sys.exit(int(snakemake.params.code))
        elif mode == "wait":  # started, then wait for the release file, then the output
            atomic.write_json(snakemake.params.started, where)
            _wait_for(snakemake.params.release)
            atomic.write_json(snakemake.output[0], where)
        elif mode == "slow_write":  # write the output bit by bit until released, a process of its own too
            sleeper = [sys.executable, "-c", "import time; time.sleep(600)", snakemake.params.marker]
            helper = subprocess.Popen(sleeper)
            partial = Path(snakemake.params.partial)
            with open(partial, "w", encoding="utf-8") as out:
                out.write("begin\\n")
                out.flush()
                atomic.write_json(snakemake.params.started, dict(where, helper=helper.pid))
                while not Path(snakemake.params.release).exists():
                    out.write("x" * 64 + "\\n")
                    out.flush()
                    time.sleep(0.05)
                out.write("end\\n")
            os.replace(partial, snakemake.output[0])
            helper.kill()
        elif mode == "version":
            from sensorcharts import cid

            atomic.write_json(snakemake.output[0],
                              dict(where, version=getattr(cid, "WARM_TEST_VERSION", None), cid_file=cid.__file__))
        elif mode == "process":  # what the job's process was given: umask and time zone
            made = Path(snakemake.output[0] + ".made")
            made.write_text("new file\\n", encoding="utf-8")
            umask = os.umask(0)
            os.umask(umask)
            atomic.write_json(snakemake.output[0],
                              dict(where, umask=umask, made_mode=made.stat().st_mode & 0o777,
                                   utcoffset=time.strftime("%z", time.localtime(0)), tzname=list(time.tzname)))
        elif mode == "text":  # draw params.text: whether this process had its layout (and params.check's) before
            import hashlib

            from matplotlib.figure import Figure

            from sensorcharts import aggcanvas

            def known(text):
                return any(key[1] == text for key in aggcanvas._layouts)

            figure = Figure(figsize=(4, 1), dpi=100)
            canvas = aggcanvas.Canvas(figure)
            figure.text(0.1, 0.4, snakemake.params.text)
            result = dict(where, known=known(snakemake.params.text),
                          checked={text: known(text) for text in snakemake.params.check})
            canvas.draw()
            if snakemake.params.fail:
                raise RuntimeError("probe drew its text, then failed on purpose")
            pixels = hashlib.sha256(bytes(canvas.buffer_rgba())).hexdigest()
            atomic.write_json(snakemake.output[0], dict(result, pixels=pixels))
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


def _waits_for_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked waiting for a file lock (a ``->`` line of /proc/locks)."""
    return any(line.split()[1] == "->" and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines())


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
              config: dict | None = None, umask: int = -1, **env: str) -> Client:
        spec = {"script": script, "rule": rule, "input": input or {},
                "output": output if output is not None else {"result": f"out/{name}.json"},
                "log": {"log": f"logs/{name}.log", "benchmark": f"bench/{name}.tsv"}, "params": params,
                "wildcards": wildcards if wildcards is not None else {"name": name}, "config": config or {}}
        spec_path = self.clients_dir / f"{name}.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        folder = self.clients_dir
        with open(folder / f"{name}.stdout", "w") as out, open(folder / f"{name}.stderr", "w") as err:
            proc = subprocess.Popen([sys.executable, str(self.client_py), str(spec_path)], cwd=self.jobdir,
                                    env=self.env(**env), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    umask=umask)
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
        return sorted(self.runtime.rglob("*.sock"))

    def servers(self) -> dict[int, str]:
        """Live warm servers of this test: session leaders naming the runtime folder (their jobs are not)."""
        return {pid: cmd for pid, cmd in processes_naming(str(self.runtime)).items()
                if (_stat(pid) or (None, 0, 0, 0))[3] == pid}

    def serve_with_idle_timeout(self, idle_s: float, first) -> tuple[subprocess.Popen, Any]:
        """Start a server as ``python -m sensorcharts.warmserver`` does, with ``IDLE_EXIT_S`` set to ``idle_s``,
        and ``first()``, a process whose job this server takes first; return both.

        The server's idle time runs from when it listens, and a job's process takes a while to start: so the
        test holds the start lock until ``first()`` waits for it, and hands it to the server, which releases
        it once it listens (as start_early does). Then no idle timeout passes before the first job arrives.
        """
        path = self.socket_path()
        path.parent.mkdir(mode=0o700, exist_ok=True)
        lock = os.open(f"{path}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            process = first()
            pid = process.pid if isinstance(process, subprocess.Popen) else process.proc.pid
            wait_for(lambda: _waits_for_a_lock(pid), "the first job to wait for the start lock")
            code = ("import signal, sys\n"
                    "from sensorcharts import warmserver\n"
                    "warmserver.IDLE_EXIT_S = float(sys.argv[2])\n"
                    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                    "warmserver.serve(sys.argv[1], int(sys.argv[3]))\n")
            proc = subprocess.Popen([sys.executable, "-c", code, str(path), str(idle_s), str(lock)], cwd="/",
                                    env=self.env(), start_new_session=True, stdin=subprocess.DEVNULL,
                                    pass_fds=(lock,))
        finally:
            os.close(lock)
        self.own.append(proc)
        wait_for(lambda: listening(path) or proc.poll() is not None, "the server to listen")
        assert proc.poll() is None, "the server exited while starting"
        return proc, process

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

def write_job(rig: Rig, name: str, **env: str) -> Client:
    (rig.jobdir / "in.txt").write_text("input text\n", encoding="utf-8")
    return rig.run(name, {"mode": "write", "numbers": [1, 2.5, None]}, input={"data": "in.txt"},
                   output={"result": f"out/{name}.json", "where": f"out/{name}.where.json"},
                   wildcards={"name": "same", "date": "2025-06-01"},
                   config={"timezone": "UTC", "nested": {"a": [1, 2]}}, **env)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
