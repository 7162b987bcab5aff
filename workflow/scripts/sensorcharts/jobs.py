"""How every job runs: a rule's ``run:`` block hands its job to a workflow script's ``main(snakemake)``.

The ``run:`` block executes in a thread of Snakemake's own process (the workflow profile sets
``force-use-threads``), where heavy imports and matplotlib do not belong: ``run_step`` sends the job to a child
of the warm server (warm.py), or, with ``SENSORCHARTS_WARM=0`` or no server to be had, to a fresh interpreter
(``python -m sensorcharts.jobs``). Either way the job is a process of its own, with the job's working
directory, environment, stdout and stderr, and its log; a failure is one line on stderr naming the rule,
with the traceback in the log. Compared with ``script:``, a job no longer starts an interpreter that imports
Snakemake only to unpickle its job (~0.12 s of CPU each; 18 of a 30-day backfill's 155 core-seconds).

The top of the package: it uses warm.py and jobprocess.py (what runs in the job's process), and nothing in
the package imports it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

from . import atomic, warm
from .jobprocess import Job, describe, log, run_main

# What the workflow scripts take from here (the job's logger, the JSON writer) lives in jobprocess.py.
__all__ = ["POLL_S", "StepFailed", "log", "remove_old_run_logs", "remove_orphaned_temporaries", "run_step",
           "stop_jobs_on_interrupt"]
# Snakemake names a run's record after its start in local time, which a clock change moves by up to an hour.
CLOCK_MARGIN_S = 2 * 3600
# How often a job's waiting thread looks whether the run was interrupted (see _abandoned).
POLL_S = 0.25
_INTERRUPTED = threading.Event()
# A temporary file left alone this long has no writer: one written elsewhere (a cluster node, a container)
# whose PID means nothing here, or one whose PID the system has given to another process since.
ORPHANED_AFTER_S = 24 * 3600


class StepFailed(Exception):
    """A job's process ended with a non-zero status (it printed its reason; the traceback is in its log)."""

    def __init__(self, rule: str, status: int, log_path: str | None):
        self.status = status
        where = f"; its log: {log_path}" if log_path else ""
        super().__init__(f"{rule} failed (exit status {status}){where}")


def run_step(script: str, rule, input, output, params, wildcards, log, config) -> None:
    """Run workflow script ``script``'s ``main`` for this job in a process of its own; raise StepFailed if
    it fails. Called from a rule's ``run:`` block with the block's own names."""
    request = {"script": script, "job": describe(rule, input, output, params, wildcards, log, config),
               "cwd": os.getcwd(), "env": dict(os.environ)}
    status = None
    if warm.enabled():
        try:
            status = warm.call(request, _abandoned, POLL_S)
        except warm.Unavailable as exc:  # the job still runs, only without the warm start
            print(f"{rule}: running in a process of its own ({exc})", file=sys.stderr, flush=True)
    if status is None:
        status = _run_cold(request)
    if _INTERRUPTED.is_set():  # what Snakemake expects of a job cut short by Ctrl-C (no error report)
        raise KeyboardInterrupt
    if status:
        raise StepFailed(rule, status, log[0] if len(log) else None)


def stop_jobs_on_interrupt() -> None:
    """Make Ctrl-C (SIGINT) of Snakemake end its running jobs' processes, as it does for ``shell:`` jobs.

    On Ctrl-C Snakemake waits for its job threads to return; a ``run:`` block waiting for a child of the warm
    server (which is not in the terminal's process group, so gets no SIGINT) would hold the run until the
    job finished. Call from the main thread; a SIGINT that is ignored (a background job) stays ignored.
    """
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return

    def interrupted(signum, frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)


def remove_orphaned_temporaries(folders) -> list[str]:
    """Delete the temporary files in ``folders`` (not below them) whose writer is gone; return their paths.

    A job killed mid-write (kill -9 of a run, or the warm server killing a job whose run went away) cannot
    delete the file it was writing before renaming it into place. A run calls this for the folders its jobs
    are about to write to (a killed job is redone, so its folders are among them), before the first job: a
    temporary file written on this host and PID namespace by a process that is no longer alive, or one
    nobody has written to for ``ORPHANED_AFTER_S``, is deleted; one a live process may still rename
    (another run's, a cluster job's) is kept. A file that cannot be deleted is named on stderr.
    """
    removed = []
    for folder in folders:
        try:
            found = [(entry, name) for entry in os.scandir(folder) if (name := atomic.TEMPORARY.match(entry.name))]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry, name in found:
            writer, pid = name.groups()
            try:
                gone = writer == atomic.WRITER and not _alive(int(pid))
                if not gone and time.time() - entry.stat().st_mtime <= ORPHANED_AFTER_S:
                    continue
            except FileNotFoundError:  # renamed into place, or removed, meanwhile
                continue
            if _remove(entry.path):
                removed.append(entry.path)
    return removed


def remove_old_run_logs(folder, days: float, keep=()) -> int:
    """Delete Snakemake's records of past runs (``*.snakemake.log`` in ``folder``) last written more than
    ``days`` days ago, but not those named in ``keep`` (this run's); return how many went.

    Snakemake writes one per run, named after the local time the run started, and deletes none: a cron run
    every 5 minutes leaves 288 a day (15-20 kB each with jobs). A run still going writes to its own, so only
    finished runs' records grow old. Only records whose names say they started before the cutoff (less a
    margin for clock changes) are looked at: a fortnight of cron records takes 6 ms to list, 24 ms to stat.
    """
    cutoff = time.time() - days * 86400
    started_before = datetime.fromtimestamp(cutoff + CLOCK_MARGIN_S).isoformat().replace(":", "")
    kept = {os.path.basename(path) for path in keep}
    removed = 0
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(".snakemake.log") and e.name < started_before]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        if entry.name in kept:
            continue
        try:
            if entry.stat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        removed += _remove(entry.path)
    return removed


def _remove(path: str) -> bool:
    """Delete ``path``; whether it was there to delete. A file that cannot be deleted is named on stderr."""
    try:
        os.unlink(path)
    except FileNotFoundError:  # removed meanwhile
        return False
    except OSError as exc:
        print(f"sensor-charts: could not remove {path}: {exc.strerror}", file=sys.stderr)
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process (a number above any PID included)
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _abandoned() -> bool:
    """Whether to stop waiting and end the job's process: the run was interrupted, or its main thread is
    gone (the job's thread is all that keeps the process alive)."""
    return _INTERRUPTED.is_set() or not threading.main_thread().is_alive()


def _run_cold(request: dict) -> int:
    """Run the job in a fresh interpreter (``python -m sensorcharts.jobs``) and return its exit status."""
    env = warm.scripts_env(request["env"])
    sys.stdout.flush()
    sys.stderr.flush()
    # A process group of its own, as a warm child has: ending the job ends what it started too.
    proc = subprocess.Popen([sys.executable, "-m", "sensorcharts.jobs"], stdin=subprocess.PIPE,
                            cwd=request["cwd"], env=env, process_group=0)
    proc.stdin.write(json.dumps({"script": request["script"], "job": request["job"]}).encode())
    proc.stdin.close()
    try:
        while True:
            try:
                return proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                if _abandoned():
                    break
    except BaseException:  # KeyboardInterrupt, when the waiting thread is the main one
        _kill_group(proc)
        raise
    _kill_group(proc)
    return proc.wait()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":  # a job in a fresh interpreter (see _run_cold): the request comes on stdin
    request = json.load(sys.stdin)
    sys.exit(run_main(Job(request["job"]), request["script"]))
