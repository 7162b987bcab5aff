"""The warm job server itself (``python -m sensorcharts.warmserver <socket> [<start lock fd>]``), started by
warm.py, which describes how jobs reach it and what keeps it safe.

It imports what jobs use once (PRELOAD), listens, then forks one child per job, which takes the job's working
directory, environment, umask, stdout and stderr and runs the workflow script's ``main`` (jobprocess.py).
Between jobs it warms up, a step at a time: the charts' figures and text caches, then what each job's script
asks for and the text each job drew (a child that succeeds hands back what it added to the text caches,
aggcanvas.lesson), so that later children start warm without the first jobs of a run waiting for it.
"""

from __future__ import annotations

import fcntl
import functools
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

from . import aggcanvas, sameuser
from .jobprocess import Job, run_main
from .warm import HEADER, SCRIPTS, STATUS, TAKEN, remove_socket

IDLE_EXIT_S = 300.0
RECEIVE_TIMEOUT_S = 10.0
LESSON = "lesson"  # the selector's mark of a child's lesson pipe
LESSON_PIPE_BYTES = 1 << 20  # Linux's default limit for a pipe an unprivileged process enlarges
# What jobs import, loaded once by the server: the modules the workflow scripts' mains use (each script
# imports them inside main, so the child's import of the script itself is cheap).
PRELOAD = ("pandas", "pyarrow.parquet", "pyarrow.csv", "sqlalchemy", "psycopg2", "requests",
           # Imported on first use (a dialect by the first engine, pyarrow.dataset by the first read_table):
           # 0.2 s of every extract job when left to the job.
           "sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.sqlite", "psycopg2.extras",
           "pyarrow.dataset", "pyarrow.pandas_compat",
           "sensorcharts.charts", "sensorcharts.tables", "sensorcharts.database", "sensorcharts.fingerprints",
           "sensorcharts.uploads", "sensorcharts.indexing", "sensorcharts.cid", "sensorcharts.demo",
           "sensorcharts.settings")


def _run_child(request: dict, fds: list[int]) -> int:
    """In the forked child, once it has said the job is taken: become the job, run it, return its status."""
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in fds:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()  # the C library keeps the server's time zone until told to read TZ again
    if request.get("umask") is not None:
        os.umask(request["umask"])
    return run_main(Job(request["job"]), request["script"])


def _receive_request(conn: socket.socket) -> tuple[dict, list[int]]:
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
    """What the server imports once, before it listens, so that its children need not."""
    for module in PRELOAD:
        importlib.import_module(module)


def _warm_step(step: Callable[[], None], what: str = "a warm-up step") -> None:
    """One step of warm-up work; a failure costs only the warmth: one line in the server's error file."""
    try:
        step()
    except Exception as exc:  # noqa: BLE001
        print(f"{what} failed: {exc!r}", file=sys.stderr, flush=True)


def _warm_for(request: dict) -> None:
    """Let the job's workflow script prepare this server for more jobs like it: its ``warm(job)``, if it has
    one, keeps in memory what the next children would otherwise compute again (render_day.py: the day's
    time axes). Run after the job went to its child, while no client waits; never the job's data, which
    stays in the child."""

    def step() -> None:
        warm = getattr(importlib.import_module(request["script"]), "warm", None)
        if warm is not None:
            warm(Job(request["job"]))

    _warm_step(step, f"warm-up after a {request['job'].get('rule')} job")


def _lesson_pipe() -> tuple[int, int]:
    """A pipe for a child's lesson, large enough (where Linux allows) that the child writes it and exits
    without waiting for the server to read: the job's client learns the job's status only then."""
    pipe = os.pipe()
    try:
        fcntl.fcntl(pipe[1], fcntl.F_SETPIPE_SZ, LESSON_PIPE_BYTES)
    except (AttributeError, OSError):  # another system, or a lower limit: the child may wait a little
        pass
    return pipe


def _teach(fd: int) -> None:
    """In a job's child, after its job succeeded: write what the job added to the text caches to ``fd``
    (aggcanvas.lesson), after its length, for the server. A failure costs only the lesson."""
    try:
        lesson = aggcanvas.lesson()
        data = memoryview(HEADER.pack(len(lesson)) + lesson) if lesson else memoryview(b"")
        while data:
            data = data[os.write(fd, data):]
    except Exception:  # noqa: BLE001  (the job succeeded; its output is what counts)
        pass


def _learn(data: bytes) -> None:
    """In the server: take a child's whole lesson (one cut short by a killed child is dropped), so that
    later children start with its text drawn."""
    if len(data) < HEADER.size or HEADER.unpack_from(data)[0] != len(data) - HEADER.size:
        return
    _warm_step(functools.partial(aggcanvas.learn, data[HEADER.size:]), "learning a job's text")


def _same_folder(path: Path, held: int) -> bool:
    """Whether ``path`` is still the folder open as ``held`` (not deleted, moved away or replaced)."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    then = os.fstat(held)
    return (now.st_dev, now.st_ino) == (then.st_dev, then.st_ino)


def _peer_is_this_user(conn: socket.socket) -> bool:
    try:
        return sameuser.peer_uid(conn) == os.geteuid()
    except OSError:
        return False


def serve(path: str, lock_fd: int | None = None) -> None:
    """Serve jobs on ``path`` until idle, stopped (SIGTERM) or its scripts folder is gone; ``lock_fd``, the
    start lock handed over by start_early, is closed (released) once the socket listens."""
    folder = sameuser.open_folder(os.path.dirname(path))
    name = os.path.basename(path)
    # Held open, the scripts folder's inode cannot be reused: a new clone in its place is told apart.
    scripts = os.open(SCRIPTS, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    preload()
    from .charts import warm_up_steps

    # Work that makes later children start warm, done a step at a time while no client waits: first the
    # charts' warm-up (figures built, text caches filled: ~25 ms of every render job's first chart, 2 s in
    # all, which would otherwise delay the first jobs of a run), then what each job's script asks for
    # (_warm_for).
    warm_work: deque[Callable[[], None]] = deque(warm_up_steps())
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # owner only, in a folder that is owner only already
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    bound = os.stat(name, dir_fd=folder, follow_symlinks=False).st_ino
    listener.listen(64)
    if lock_fd is not None:
        os.close(lock_fd)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    # A finished child or a SIGTERM wakes the loop at once (through a wake-up pipe), so a job's client, and
    # the Snakemake job waiting on it, learn its status without waiting for a polling interval.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    stopped: list[int] = []
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    selector.register(wake_r, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    lessons: dict[int, bytearray] = {}  # read end of a child's lesson pipe: what came so far
    last_success = time.monotonic()  # failed jobs do not count: a server failing every job still idles out
    try:
        while not stopped and (children or listener and time.monotonic() - last_success < IDLE_EXIT_S):
            if listener and not _same_folder(SCRIPTS, scripts):  # retire: finish the running jobs, take no more
                selector.unregister(listener)
                remove_socket(folder, name, bound)
                listener.close()
                listener = None
            events = selector.select(timeout=0 if warm_work else 1.0)
            if not events and warm_work:  # nothing waits: time to prepare for later jobs
                _warm_step(warm_work.popleft())
            for key, _ in events:
                if key.fileobj == wake_r:
                    try:  # one byte per signal; any left over wakes the next select
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif key.fileobj is listener:
                    conn, _ = listener.accept()
                    # Another user's connection, or one that arrives as the server stops or retires, is closed
                    # unread: nothing ran, and a client of this user runs its job in a fresh interpreter.
                    if stopped or not _peer_is_this_user(conn) or not _same_folder(SCRIPTS, scripts):
                        conn.close()
                        continue
                    try:
                        request, fds = _receive_request(conn)
                    except (OSError, ValueError):  # ConnectionError, timeouts and bad JSON included
                        conn.close()
                        continue
                    pipe: tuple[int, ...] = ()
                    try:
                        pipe = _lesson_pipe()
                        pid = os.fork()
                    except OSError:
                        for fd in (*fds, *pipe):
                            os.close(fd)
                        conn.close()
                        continue
                    lesson_r, lesson_w = pipe
                    if pid == 0:  # the job
                        status = 1
                        try:
                            signal.set_wakeup_fd(-1)
                            for signum in (signal.SIGCHLD, signal.SIGTERM):  # the job's own, as in any process
                                signal.signal(signum, signal.SIG_DFL)
                            try:
                                os.setpgid(0, 0)
                            except OSError:
                                pass
                            conn.sendall(TAKEN)  # a client that is gone already raises here: nothing runs
                            for other in [listener, conn, *children.values()]:
                                other.close()
                            selector.close()
                            for fd in (wake_r, wake_w, folder, scripts, lesson_r, *lessons):
                                os.close(fd)
                            aggcanvas.begin_lesson()
                            status = _run_child(request, fds)
                            if status == 0:
                                _teach(lesson_w)
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
                    for fd in (*fds, lesson_w):
                        os.close(fd)
                    children[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
                    os.set_blocking(lesson_r, False)
                    lessons[lesson_r] = bytearray()
                    selector.register(lesson_r, selectors.EVENT_READ, LESSON)
                    # The job's rule and wildcards, not its environment.
                    warm_work.append(functools.partial(_warm_for, {"script": request["script"], "job": request["job"]}))
                elif key.data is LESSON:  # a child's lesson, read as it comes; complete when the child closes it
                    fd = key.fileobj
                    try:
                        chunk = os.read(fd, 1 << 20)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if chunk:
                        lessons[fd] += chunk
                        continue
                    selector.unregister(fd)
                    os.close(fd)
                    data = lessons.pop(fd)
                    if data:
                        warm_work.append(functools.partial(_learn, bytes(data)))
                else:  # a job's connection is readable only when its client is gone: stop the job
                    selector.unregister(key.fileobj)
                    _kill_job(key.data)
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
                code = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall(STATUS.pack(code))
                except OSError:
                    pass
                conn.close()
                if code == 0:
                    last_success = time.monotonic()
    finally:
        for pid in children:  # stopped (or failing): its jobs go with it
            _kill_job(pid)
        for fd in lessons:
            os.close(fd)
        remove_socket(folder, name, bound)


def _kill_job(pid: int) -> None:
    """Kill a job's child and whatever it started (its process group)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal that started a job is not for us
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
