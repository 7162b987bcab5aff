"""A warm fork server, so a Snakemake job skips Python's heavy imports (pandas, pyarrow, matplotlib, …).

A fresh interpreter spends 0.4–0.9 s importing before a job does any work; a render job of a whole day
takes ~5 s, the other jobs well under a second of real work. Here a rule's ``run:`` block (jobs.run_step,
in Snakemake's process, which imports only this light module) sends its job to a server that imported
everything once, and the server forks one child per job. The child is a separate process, as a job would
be: it gets the job's working directory, environment, stdout and stderr (passed as file descriptors over
the Unix socket), runs the workflow script's ``main`` and exits with its status, which the job takes.

* One server per machine user and code version: the socket name holds a digest of this package and the
  Python executable, so changed code starts a new server and the old one exits once idle (``IDLE_EXIT_S``).
* A job whose waiting end goes away (kill -9 of Snakemake, a cancelled cluster job, a run interrupted with
  Ctrl-C) closes its connection; the server then kills the job's child at once, so nothing keeps writing
  behind a new run's back.
* The server never runs a job itself and starts no threads of its own (pyarrow's allocator may keep a
  background thread, which holds no lock a child needs), so forking it is safe; it exits when idle.
* A server that cannot start or be reached (its errors go to ``<socket>.err``) costs nothing but the warm
  start: the job runs in a fresh interpreter and says so in one line.
* ``SENSORCHARTS_WARM=0`` runs every job in a fresh interpreter instead (``python -m sensorcharts.jobs``).
* The socket name does not cover installed libraries: after upgrading pandas or matplotlib, jobs are served
  by the old server until it idles out (``IDLE_EXIT_S``) unless it is stopped.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .jobprocess import Job, run_main

IDLE_EXIT_S = 300.0
START_TIMEOUT_S = 60.0
RECEIVE_TIMEOUT_S = 10.0
PACKAGE = Path(__file__).resolve().parent
SCRIPTS = PACKAGE.parent
# What jobs import, loaded once by the server: the modules the workflow scripts' mains use (each script
# imports them inside main, so the child's import of the script itself is cheap).
PRELOAD = ("pandas", "pyarrow.parquet", "pyarrow.csv", "sqlalchemy", "psycopg2", "requests",
           # Imported on first use (a dialect by the first engine, pyarrow.dataset by the first read_table):
           # 0.2 s of every extract job when left to the job.
           "sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.sqlite", "psycopg2.extras",
           "pyarrow.dataset", "pyarrow.pandas_compat",
           "sensorcharts.charts", "sensorcharts.tables", "sensorcharts.database", "sensorcharts.fingerprints",
           "sensorcharts.publish", "sensorcharts.cid", "sensorcharts.demo", "sensorcharts.settings")
HEADER = struct.Struct("!Q")
STATUS = struct.Struct("!i")


def enabled() -> bool:
    return os.environ.get("SENSORCHARTS_WARM", "1").strip().lower() not in ("0", "false", "no", "off")


def socket_path() -> str:
    """A short path (Unix sockets allow ~100 bytes) naming this user, Python and code version."""
    digest = hashlib.sha256(sys.executable.encode())
    for source in sorted(PACKAGE.glob("*.py")) + sorted(SCRIPTS.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    folder = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(folder, f"sensorcharts-{os.getuid()}-{digest.hexdigest()[:16]}.sock")


# ---------------------------------------------------------------------------------------------------------
# The job's side
# ---------------------------------------------------------------------------------------------------------


class Unavailable(Exception):
    """No warm server could take the job (it could not start, or it was exiting): run it in a fresh interpreter."""


def _connect(path: str) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        return conn
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    except OSError as exc:  # e.g. a socket path longer than the system allows
        conn.close()
        raise Unavailable(f"cannot reach {path}: {exc}") from None


def scripts_env(env: dict) -> dict:
    """``env`` with the workflow scripts' folder first on PYTHONPATH, for a new interpreter that runs jobs."""
    return dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")])))


def _spawn(path: str, lock_fd: int | None = None) -> subprocess.Popen:
    """Start a server for ``path`` in a session of its own; it closes ``lock_fd`` once it listens."""
    env = scripts_env(os.environ)
    # The server's own errors (say, a failing import) go to a file next to its socket, owner only.
    errors = os.open(path + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    extra = [] if lock_fd is None else [str(lock_fd)]
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "sensorcharts.warm", path, *extra], cwd="/", env=env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, close_fds=True,
            pass_fds=() if lock_fd is None else (lock_fd,),
        )
    finally:
        os.close(errors)


def _start_server(path: str) -> socket.socket:
    """Connect, starting the server first if none answers (one starter at a time, under a lock)."""
    import fcntl

    conn = _connect(path)
    if conn:
        return conn
    with open(path + ".lock", "a") as lock:
        # Held by whoever starts a server until it listens (start_early hands it to the server itself).
        fcntl.flock(lock, fcntl.LOCK_EX)
        conn = _connect(path)
        if conn:
            return conn
        Path(path).unlink(missing_ok=True)  # a socket left by a server that died
        server = _spawn(path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and server.poll() is None:
            conn = _connect(path)
            if conn:
                return conn
            time.sleep(0.02)
    raise Unavailable(f"the warm job server did not start (its errors, if any: {path}.err)")


def start_early() -> None:
    """Start this code's server now, without waiting for it, unless one is running or starting.

    For Snakemake's process while it builds the DAG of a run that has jobs to do: the server's imports (~1.5 s
    of one core) then overlap that work instead of delaying the first jobs. The start lock goes to the server,
    which holds it until it listens, so a job arriving meanwhile waits for it instead of starting another. Any
    problem is left for the first job to meet (and report).
    """
    import fcntl

    path = socket_path()
    try:
        conn = _connect(path)
        if conn:
            conn.close()
            return
        fd = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except (Unavailable, OSError):
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        conn = _connect(path)
        if conn:
            conn.close()
            return
        Path(path).unlink(missing_ok=True)
        _spawn(path, lock_fd=fd)
    except (Unavailable, OSError):  # BlockingIOError: another process is starting one
        return
    finally:
        os.close(fd)  # the server's copy of the descriptor keeps the lock until it listens


def call(request: dict, abandoned=lambda: False, poll_s: float = 0.25) -> int:
    """Run a job (see jobs.run_step for ``request``) in a child of the warm server; return its exit status.

    While it waits, ``abandoned()`` is asked every ``poll_s`` seconds whether to give up: closing the
    connection makes the server kill the job's process group at once.
    """
    payload = json.dumps(request).encode()
    sys.stdout.flush()
    sys.stderr.flush()
    conn = _start_server(socket_path())
    with conn:
        try:
            socket.send_fds(conn, [HEADER.pack(len(payload))], [1, 2])
            conn.sendall(payload)
        except (ConnectionResetError, BrokenPipeError) as exc:  # the server was exiting, idle: nothing ran
            raise Unavailable(f"the warm job server closed the connection: {exc}") from None
        conn.settimeout(poll_s)
        answer = b""
        while len(answer) < STATUS.size:
            try:
                chunk = conn.recv(STATUS.size - len(answer))
            except TimeoutError:
                if abandoned():
                    return 1
                continue
            if not chunk:
                print(f"{request['job']['rule']}: the warm job server stopped during the job", file=sys.stderr)
                return 1
            answer += chunk
    return STATUS.unpack(answer)[0]


# ---------------------------------------------------------------------------------------------------------
# The server's side
# ---------------------------------------------------------------------------------------------------------


def _run_child(request: dict, fds: list[int]) -> int:
    """In the forked child: become the job, run it, return its exit status."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in fds:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    return run_main(Job(request["job"]), request["script"])


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """A client's request and its stdout/stderr; raises ConnectionError on anything short or malformed."""
    conn.settimeout(RECEIVE_TIMEOUT_S)  # a client that connects and sends nothing must not stall the server
    head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 2)
    if len(head) != HEADER.size or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        raise ConnectionError("incomplete request")
    (size,) = HEADER.unpack(head)
    body = bytearray()
    while len(body) < size:
        chunk = conn.recv(min(1 << 20, size - len(body)))
        if not chunk:
            raise ConnectionError("client went away")
        body += chunk
    conn.settimeout(None)
    return json.loads(body), list(fds)


def preload() -> None:
    """What the server does once, so that its children need not: import what jobs use, and draw once, so
    that every child starts with the figures built and matplotlib's font and text caches filled, as the
    second chart of a long-lived process does (~25 ms a job)."""
    for module in PRELOAD:
        importlib.import_module(module)
    from .charts import warm_up

    warm_up()


def serve(path: str, lock_fd: int | None = None) -> None:
    """Serve jobs on ``path`` until idle; ``lock_fd``, the start lock handed over by start_early, is closed
    (released) once the socket listens."""
    preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket carries environments (secrets): owner only
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(64)
    if lock_fd is not None:
        os.close(lock_fd)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    # A finished child wakes the loop at once (SIGCHLD through a wake-up pipe), so its client, and the
    # Snakemake job waiting on it, learn its status without waiting for a polling interval.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    selector.register(wake_r, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    last_active = time.monotonic()
    try:
        while children or time.monotonic() - last_active < IDLE_EXIT_S:
            for key, _ in selector.select(timeout=1.0):
                if key.fileobj == wake_r:
                    try:  # one byte per signal; any left over wakes the next select
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif key.fileobj is listener:
                    conn, _ = listener.accept()
                    try:
                        request, fds = _receive(conn)
                    except (OSError, ValueError):  # ConnectionError, timeouts and bad JSON included
                        conn.close()
                        continue
                    pid = os.fork()
                    if pid == 0:  # the job
                        status = 1
                        try:
                            signal.set_wakeup_fd(-1)
                            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the job's own subprocesses
                            for other in [listener, conn, *children.values()]:
                                other.close()
                            selector.close()
                            os.close(wake_r)
                            os.close(wake_w)
                            status = _run_child(request, fds)
                        except SystemExit as exc:  # sys.exit(n) in a job: status n, as in-process
                            code = exc.code
                            status = code if isinstance(code, int) else 0 if code is None else 1
                            if not isinstance(code, (int, type(None))):
                                print(code, file=sys.stderr)
                        finally:
                            sys.stdout.flush()
                            sys.stderr.flush()
                            os._exit(status)
                    try:
                        os.setpgid(pid, pid)  # also done by the child: whichever runs first, killpg works
                    except OSError:
                        pass
                    for fd in fds:
                        os.close(fd)
                    children[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
                else:  # a job's connection is readable only when its client is gone: stop the job
                    selector.unregister(key.fileobj)
                    try:
                        os.killpg(key.data, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is None:
                    continue
                try:
                    selector.unregister(conn)
                except KeyError:
                    pass  # its client is gone already
                try:
                    conn.sendall(STATUS.pack(os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass
                conn.close()
                last_active = time.monotonic()
    finally:
        Path(path).unlink(missing_ok=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal that started a job is not for us
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
