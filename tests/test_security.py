"""The warm job server on a machine shared with another user (docs/security.md).

A second user of the machine is a real process of another uid: a child of this test process that drops root
with os.setgid/os.setuid (uid and gid 65534, ``nobody`` on Debian; the kernel needs no account for a uid, so
nothing is created on the machine). It plants, at the paths the operator's jobs would use, a listening
socket, symlinks at the lock and error files, a runtime folder of its own, and it knocks on the operator's
server. The operator's jobs must still do their work (through the fall-back to a fresh interpreter where
the warm server cannot be trusted), the other user must receive nothing, and no file may be written through
a planted symlink. These tests need root; elsewhere they skip, and in CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import traceback
from pathlib import Path

import pytest
from warm_rig import DEADLINE_S, Rig, read_json, write_job

OTHER_UID = OTHER_GID = 65534


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    reason = "needs root, to run a process as a second user of the machine (os.setuid in a forked child)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI runs as root and must run these tests")
    pytest.skip(reason)


@pytest.fixture
def rig(tmp_path):
    _need_root()
    with Rig(tmp_path) as rig:
        rig.runtime.chmod(0o1777)  # as /tmp: anyone may create entries, nobody may remove another's
        yield rig


class OtherUser:
    """``work(ready, stop_fd, *args)`` run by a forked child as uid OTHER_UID; it calls ``ready()`` once set
    up, may watch ``stop_fd`` (readable when the test is done) and returns what it saw, as JSON data."""

    def __init__(self, work, *args):
        ready_r, ready_w = os.pipe()
        self.stop_r, self.stop_w = os.pipe()
        report_r, report_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(ready_r)
                os.close(self.stop_w)
                os.close(report_r)
                os.setgroups([])
                os.setgid(OTHER_GID)
                os.setuid(OTHER_UID)
                result = work(lambda: os.write(ready_w, b"ready"), self.stop_r, *args)
            except BaseException:
                result = {"error": traceback.format_exc()}
            with os.fdopen(report_w, "w") as report:
                json.dump(result, report)
            os._exit(0)
        os.close(ready_w)
        os.close(self.stop_r)
        os.close(report_w)
        self.ready_r, self.report_r, self.result = ready_r, report_r, None

    def wait_ready(self) -> None:
        readable, _, _ = select.select([self.ready_r], [], [], DEADLINE_S)
        if not readable or os.read(self.ready_r, 16) != b"ready":
            raise AssertionError(f"the other user's process did not get ready: {self.finish()}")

    def finish(self) -> dict:
        """Tell the process the test is done; return its report."""
        if self.result is None:
            os.close(self.stop_w)
            with os.fdopen(self.report_r) as report:
                text = report.read()
            os.close(self.ready_r)
            os.waitpid(self.pid, 0)
            self.result = json.loads(text)
            assert "error" not in self.result, self.result["error"]
        return self.result


@pytest.fixture
def other_user():
    started: list[OtherUser] = []

    def start(work, *args) -> OtherUser:
        process = OtherUser(work, *args)
        started.append(process)
        process.wait_ready()
        return process

    yield start
    for process in started:
        if process.result is None:
            try:
                process.finish()
            except Exception:  # the test's own assertion matters more
                pass


def _listen_and_record(listener: socket.socket, stop_fd: int) -> dict:
    """Accept every connection until the test is done; count what arrives. Each complete request gets
    "exit 0" as its answer, as an impostor would answer to keep the job from noticing."""
    seen = {"connections": 0, "bytes": 0, "fds": 0}
    conns: dict[socket.socket, bytes] = {}
    while True:
        readable, _, _ = select.select([listener, stop_fd, *conns], [], [])
        if stop_fd in readable:
            return seen
        for source in readable:
            if source is listener:
                conns[listener.accept()[0]] = b""
                seen["connections"] += 1
                continue
            try:
                data, fds, _, _ = socket.recv_fds(source, 1 << 16, 8)
            except OSError:
                data, fds = b"", []
            for fd in fds:
                os.close(fd)
            seen["bytes"] += len(data)
            seen["fds"] += len(fds)
            if not data:
                del conns[source]
                source.close()
                continue
            conns[source] += data
            got = conns[source]
            if len(got) >= 8 and len(got) >= 8 + int.from_bytes(got[:8], "big"):
                source.sendall((0).to_bytes(4, "big"))


# What the other user plants, by test case: in which folder (their own where the operator's would be, a
# symlink to theirs there, or the operator's own folder left open to everybody), and what.
PLANTS = {
    "listener": ("own", {"symlinks", "listener"}),
    "symlinks": ("own", {"symlinks"}),
    "symlinked-folder": ("symlink", {"symlinks", "listener"}),
    "held-lock": ("own", {"held-lock"}),
    "loose-folder": ("loose", {"held-lock"}),
}


def _plant(ready, stop_fd: int, socket_path: str, how: str, victims: dict) -> dict:
    """As the other user: plant what PLANTS[how] says at the operator's socket path, then listen there."""
    sock = Path(socket_path)
    folder, plants = PLANTS[how]
    if folder == "symlink" and not sock.parent.exists():
        elsewhere = sock.parent.parent / "elsewhere"
        elsewhere.mkdir()
        sock.parent.symlink_to(elsewhere)
    elif not sock.parent.exists():  # a runtime folder of their own, where the operator's would be
        sock.parent.mkdir(mode=0o700)
    if "symlinks" in plants:
        os.symlink(victims["err"], f"{sock}.err")
        os.symlink(victims["lock"], f"{sock}.lock")
    if "held-lock" in plants:  # a start lock never released (kept open until the end), and an error "file"
        # that blocks whoever opens it for writing
        fcntl.flock(os.open(f"{sock}.lock", os.O_WRONLY | os.O_CREAT, 0o666), fcntl.LOCK_EX)
        os.mkfifo(f"{sock}.err", 0o666)
    if "listener" not in plants:
        ready()
        os.read(stop_fd, 1)
        return {"connections": 0, "bytes": 0, "fds": 0}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    os.chmod(sock, 0o777)
    listener.listen()
    ready()
    return _listen_and_record(listener, stop_fd)


@pytest.mark.parametrize("how", list(PLANTS))
def test_what_another_user_plants_at_the_servers_paths_gets_nothing(rig, other_user, tmp_path, how):
    """listener: a runtime folder of the other user's own where the operator's would be, with a listening
    socket and symlinks at the lock and error files; symlinks: only the symlinks; symlinked-folder: the
    operator's folder name is a symlink to the other user's folder; held-lock: the other user's folder with
    a start lock they hold and a FIFO as the error file; loose-folder: the same in the operator's own folder,
    left open to everybody (mode 0777)."""
    path = rig.socket_path()
    if how == "loose-folder" and not path.parent.exists():
        path.parent.mkdir()
        path.parent.chmod(0o777)
    victims = {"err": tmp_path / "precious.txt", "lock": tmp_path / "created-through-a-link"}
    victims["err"].write_text("precious\n", encoding="utf-8")
    other = other_user(_plant, str(path), how, {k: str(v) for k, v in victims.items()})

    jobs = [write_job(rig, name, WARM_PROBE_VALUE="secret-value") for name in ("first", "second")]
    assert other.finish() == {"connections": 0, "bytes": 0, "fds": 0}
    assert victims["err"].read_text(encoding="utf-8") == "precious\n"
    assert not victims["lock"].exists()
    for job in jobs:
        assert job.proc.returncode == 0, job.stderr
        result = read_json(rig.jobdir / "out" / f"{job.name}.json")
        assert (result["input"], result["env"]) == ("input text\n", "secret-value")
        where = read_json(rig.jobdir / "out" / f"{job.name}.where.json")
        assert where["ppid"] == job.proc.pid  # a fresh interpreter
        fallback = [line for line in job.stderr.splitlines() if "running in a process of its own" in line]
        assert len(fallback) == 1 and str(path.parent) in fallback[0], job.stderr
    assert not rig.servers()


def _bind_elsewhere(ready, stop_fd: int, path: str) -> dict:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o777)
    listener.listen()
    ready()
    return _listen_and_record(listener, stop_fd)


def test_a_socket_of_another_user_gets_nothing_from_a_job(rig, other_user):
    """Whatever put it there (a shared runtime folder, root), a socket whose listener is another user's hears
    nothing from a job: not one byte of its environment, none of its file descriptors."""
    path = rig.socket_path()
    path.parent.mkdir(mode=0o700, exist_ok=True)
    theirs = rig.runtime / "theirs.sock"
    other = other_user(_bind_elsewhere, str(theirs))
    os.rename(theirs, path)  # the listener answers at its new name

    job = write_job(rig, "job", WARM_PROBE_VALUE="secret-value")
    assert job.proc.returncode == 0, job.stderr
    assert read_json(rig.jobdir / "out" / "job.json")["env"] == "secret-value"
    assert read_json(rig.jobdir / "out" / "job.where.json")["ppid"] == job.proc.pid
    fallback = [line for line in job.stderr.splitlines() if "running in a process of its own" in line]
    assert len(fallback) == 1 and f"uid {OTHER_UID}" in fallback[0], job.stderr
    assert other.finish() == {"connections": 1, "bytes": 0, "fds": 0}


def _knock(ready, stop_fd: int, path: str, request: dict) -> dict:
    """As the other user: send the operator's server a job, and record what comes back."""
    payload = json.dumps(request).encode()
    received = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(DEADLINE_S)
        conn.connect(path)
        try:
            socket.send_fds(conn, [len(payload).to_bytes(8, "big")], [1, 2])
            conn.sendall(payload)
            while chunk := conn.recv(64):
                received += chunk
        except OSError:  # the server hung up
            pass
    ready()
    return {"received": received.hex()}


def test_the_server_serves_no_other_user(rig, other_user):
    """Even through a path the other user can reach (here a hard link root made), the operator's server runs
    nothing for another uid: it hangs up before reading the request."""
    first = write_job(rig, "first")
    assert first.proc.returncode == 0, first.stderr
    (server,) = rig.servers()
    public = rig.runtime / "public"
    public.mkdir(mode=0o777)
    public.chmod(0o777)
    link = public / "server.sock"
    os.link(rig.socket_path(), link)
    link.chmod(0o666)

    intruded = rig.jobdir / "out" / "intruder.json"

    def named(items, names=None):
        return {"items": items, "names": names or {}}

    request = {"script": "warm_probe", "cwd": str(rig.jobdir), "env": {"PATH": os.environ["PATH"]},
               "job": {"rule": "probe", "input": named([]), "output": named([str(intruded)]),
                       "params": named(["version"], {"mode": [0, None]}),
                       "wildcards": named(["x"], {"name": [0, None]}), "log": named(["logs/intruder.log"]),
                       "config": {}}}
    other = other_user(_knock, str(link), request)
    assert other.finish() == {"received": ""}
    assert not intruded.exists()

    again = write_job(rig, "again")
    assert again.proc.returncode == 0, again.stderr
    assert read_json(rig.jobdir / "out" / "again.where.json")["ppid"] == server
