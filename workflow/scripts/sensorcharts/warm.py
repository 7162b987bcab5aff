"""A warm fork server, so a Snakemake job skips Python's heavy imports (pandas, pyarrow, matplotlib, …).

A fresh interpreter spends 0.4–0.9 s importing before a job does any work; a render job of a whole day
takes ~5 s, the other jobs well under a second of real work. Here a rule's ``run:`` block (jobs.run_step,
in Snakemake's process, which imports only this light module) sends its job to a server that imported
everything once (warmserver.py), and the server forks one child per job. The child is a separate process,
as a job would be: it gets the job's working directory, environment, stdout and stderr (passed as file
descriptors over the Unix socket), runs the workflow script's ``main`` and exits with its status, which the
job takes. This module is the jobs' side: where the server is, starting it, and handing it a job.

* One server per machine user, Python, checkout and code version: the socket's name holds a digest of the
  Python executable, where the workflow's scripts are and what they hold, and the names and versions of the
  installed distributions. Changed code, another clone or upgraded libraries start a new server; the old one
  exits once idle (``IDLE_EXIT_S``), where only a job that succeeds counts as activity, so that a server
  failing every job goes away too. A server whose scripts folder is deleted or replaced takes no more jobs.
* Only this user's: the socket, start lock and error file are in the user's private runtime folder, and
  both ends check the other's uid before anything passes (sameuser.py; docs/security.md).
* A job whose waiting end goes away (kill -9 of Snakemake, a cancelled cluster job, a run interrupted with
  Ctrl-C) closes its connection; the server then kills the job's child at once, so nothing keeps writing
  behind a new run's back. Stopping the server (SIGTERM) kills its running jobs too.
* A job is the server's once its child says so (one byte, sent before the job starts). A connection that
  ends before that ran nothing (the server was exiting, idle or stopped), so the job runs in a fresh
  interpreter, as it does when no server can be started or reached (any OSError: a runtime folder that is
  missing or not private, say; the server's own errors go to ``<socket>.err``). Either costs only the warm
  start, and says so in one line.
* The child takes the job's working directory, environment (with its time zone), umask, stdout and stderr.
* Once a job is in its child and no client waits, the server lets the job's script prepare it for more jobs
  like it (the script's ``warm(job)``; render_day.py keeps the day's time axes drawn, so the next days' jobs
  start with them). A child whose job succeeds also hands back the text its charts added to the text caches
  (aggcanvas.lesson: layouts, sizes and glyph bitmaps, builtin values only), for the next children. So the
  server keeps each job's rule and wildcards and the strings its charts showed (titles, labels, and value
  tick labels and device names, which follow from the readings); no reading itself, nothing of a job's
  environment.
* The server never runs a job itself and starts no threads of its own (pyarrow's allocator may keep a
  background thread, which holds no lock a child needs), so forking it is safe.
* ``SENSORCHARTS_WARM=0`` runs every job in a fresh interpreter instead (``python -m sensorcharts.jobs``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from . import sameuser

START_TIMEOUT_S = 60.0
PACKAGE = Path(__file__).resolve().parent
SCRIPTS = PACKAGE.parent
# The protocol: a request's length, then the request (JSON) with the job's stdout and stderr as file
# descriptors; TAKEN from the job's child; the job's exit status.
HEADER = struct.Struct("!Q")
STATUS = struct.Struct("!i")
TAKEN = b"\x01"  # sent by a job's child before the job starts: from then on the job is the server's


def enabled() -> bool:
    return os.environ.get("SENSORCHARTS_WARM", "1").strip().lower() not in ("0", "false", "no", "off")


def socket_path() -> str:
    """This code's socket, in the user's private runtime folder. Its name (short: Unix socket paths are
    limited to ~100 bytes) is a digest of Python, the scripts' folder and sources, and the installed
    distributions."""
    digest = hashlib.sha256("\0".join([sys.executable, str(SCRIPTS), installed_distributions()]).encode())
    for source in sorted(PACKAGE.glob("*.py")) + sorted(SCRIPTS.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return os.path.join(sameuser.folder_path(), f"{digest.hexdigest()[:16]}.sock")


@functools.cache
def installed_distributions() -> str:
    """The distributions importable here, by name and version: the ``<name>-<version>.dist-info`` (and
    ``.egg-info``) entries of sys.path's folders, which is where importlib.metadata finds them. Once per
    process, since an upgrade matters to the next run: listing the folders is cheap, reading every
    distribution's metadata is not."""
    found = set()
    for entry in sys.path:
        if not os.path.isabs(entry):
            continue
        try:
            with os.scandir(entry) as listing:
                found.update(item.name for item in listing if item.name.endswith((".dist-info", ".egg-info")))
        except OSError:  # a zip file, a folder that is not there
            continue
    return "\n".join(sorted(found))


# ---------------------------------------------------------------------------------------------------------
# The job's side
# ---------------------------------------------------------------------------------------------------------


class Unavailable(Exception):
    """No warm server of this user took the job, and nothing ran: run it in a fresh interpreter."""


def _connect(path: str) -> socket.socket | None:
    """A connection to the server at ``path``, whose process is this user's; None when nobody listens."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        uid = sameuser.peer_uid(conn)
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    except OSError as exc:  # e.g. a socket path longer than the system allows
        conn.close()
        raise Unavailable(f"cannot reach {path}: {exc}") from None
    if uid != os.geteuid():
        conn.close()
        raise Unavailable(f"{path} is served by uid {uid}, not by this user; nothing was sent to it")
    return conn


def scripts_env(env: dict) -> dict:
    """``env`` with the workflow scripts' folder first on PYTHONPATH, for a new interpreter that runs jobs."""
    return dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH")])))


def _spawn(path: str, folder: int, lock: int | None = None) -> subprocess.Popen:
    """Start a server for ``path`` (in open private folder ``folder``) in a session of its own; it closes
    ``lock`` once it listens."""
    env = scripts_env(os.environ)
    # The server's own errors (say, a failing import) go to a file next to its socket, owner only.
    errors = sameuser.open_file(folder, os.path.basename(path) + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    extra = [] if lock is None else [str(lock)]
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "sensorcharts.warmserver", path, *extra], cwd="/", env=env, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, close_fds=True,
            pass_fds=() if lock is None else (lock,),
        )
    finally:
        os.close(errors)


def _open_lock(folder: int, path: str) -> int:
    """The start lock beside ``path``: held by whoever starts a server until it listens."""
    return sameuser.open_file(folder, os.path.basename(path) + ".lock", os.O_WRONLY | os.O_CREAT)


def remove_socket(folder: int, name: str, inode: int | None = None) -> None:
    """Remove socket ``name`` of ``folder``: one left by a server that died, or (``inode``) this server's
    own, unless another server has bound the name since."""
    try:
        if inode is None or os.stat(name, dir_fd=folder, follow_symlinks=False).st_ino == inode:
            os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass


def _start_server(path: str) -> socket.socket:
    """Connect, starting the server first if none answers (one starter at a time, under a lock)."""
    import fcntl

    folder = sameuser.open_folder(os.path.dirname(path))
    try:
        conn = _connect(path)
        if conn:
            return conn
        lock = _open_lock(folder, path)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            conn = _connect(path)
            if conn:
                return conn
            remove_socket(folder, os.path.basename(path))
            server = _spawn(path, folder)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and server.poll() is None:
                conn = _connect(path)
                if conn:
                    return conn
                time.sleep(0.02)
        finally:
            os.close(lock)
    finally:
        os.close(folder)
    raise Unavailable(f"the warm job server did not start (its errors, if any: {path}.err)")


def start_early() -> None:
    """Start this code's server now, without waiting for it, unless one is running or starting.

    For Snakemake's process while it builds the DAG of a run that has jobs to do: the server's imports (~1.5 s
    of one core) then overlap that work instead of delaying the first jobs. The start lock goes to the server,
    which holds it until it listens, so a job arriving meanwhile waits for it instead of starting another. Any
    problem is left for the first job to meet (and report).
    """
    import fcntl

    try:
        path = socket_path()
        folder = sameuser.open_folder(os.path.dirname(path))
    except OSError:
        return
    try:
        conn = _connect(path)
        if conn:
            conn.close()
            return
        lock = _open_lock(folder, path)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            conn = _connect(path)
            if conn:
                conn.close()
                return
            remove_socket(folder, os.path.basename(path))
            _spawn(path, folder, lock)
        finally:
            os.close(lock)  # the server's copy of the descriptor keeps the lock until it listens
    except (Unavailable, OSError):  # BlockingIOError: another process is starting one
        return
    finally:
        os.close(folder)


def call(request: dict, abandoned=lambda: False, poll_s: float = 0.25) -> int:
    """Run a job (see jobs.run_step for ``request``) in a child of the warm server; return its exit status.

    Raises Unavailable, with nothing run, when no server of this user takes the job. While it waits,
    ``abandoned()`` is asked every ``poll_s`` seconds whether to give up: closing the connection makes the
    server kill the job's process group at once.
    """
    try:
        payload = json.dumps(dict(request, umask=_umask())).encode()
        sys.stdout.flush()
        sys.stderr.flush()
        conn = _start_server(socket_path())
    except OSError as exc:  # a runtime folder that is missing or not private, a source that cannot be read, …
        raise Unavailable(f"no warm job server: {exc}") from None
    with conn:
        try:
            socket.send_fds(conn, [HEADER.pack(len(payload))], [1, 2])
            conn.sendall(payload)
            taken = _read(conn, len(TAKEN), abandoned, poll_s)
        except OSError as exc:  # the server was exiting: nothing ran
            raise Unavailable(f"the warm job server closed the connection: {exc}") from None
        if taken is not None and taken != TAKEN:
            raise Unavailable("the warm job server closed the connection before taking the job")
        try:
            answer = taken and _read(conn, STATUS.size, abandoned, poll_s)
        except OSError:
            answer = b""
    if answer is None:  # abandoned: closing the connection ended the job
        return 1
    if len(answer) < STATUS.size:
        print(f"{request['job']['rule']}: the warm job server stopped during the job", file=sys.stderr)
        return 1
    return STATUS.unpack(answer)[0]


def _read(conn: socket.socket, size: int, abandoned, poll_s: float) -> bytes | None:
    """``size`` bytes from ``conn`` (fewer if it closes first), or None once ``abandoned()`` while waiting."""
    conn.settimeout(poll_s)
    data = b""
    while len(data) < size:
        try:
            chunk = conn.recv(size - len(data))
        except TimeoutError:
            if abandoned():
                return None
            continue
        if not chunk:
            break
        data += chunk
    return data


def _umask() -> int | None:
    """This process's umask, read without setting it (os.umask would change it for every thread)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except OSError:  # not Linux: the job gets the server's
        pass
    return None
