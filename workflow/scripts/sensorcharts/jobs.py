"""How every job runs: a rule's ``run:`` block hands its job to a workflow script's ``main(snakemake)``.

The ``run:`` block executes in a thread of Snakemake's own process (the workflow profile sets
``force-use-threads``), where heavy imports and matplotlib do not belong: ``run_step`` sends the job to a child
of the warm server (warm.py), or, with ``SENSORCHARTS_WARM=0`` or no server to be had, to a fresh interpreter
(``python -m sensorcharts.jobs``). Either way the job is a process of its own, with the job's working
directory, environment, stdout and stderr, and its log; a failure is one line on stderr naming the rule,
with the traceback in the log. Compared with ``script:``, a job no longer starts an interpreter that imports
Snakemake only to unpickle its job (~0.12 s of CPU each; 18 of a 30-day backfill's 155 core-seconds).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

from . import atomic

log = logging.getLogger("sensorcharts")
# How often a job's waiting thread looks whether the run was interrupted (see _abandoned).
POLL_S = 0.25
_INTERRUPTED = threading.Event()


class StepFailed(Exception):
    """A job's process ended with a non-zero status (it printed its reason; the traceback is in its log)."""

    def __init__(self, rule: str, status: int, log_path: str | None):
        self.status = status
        where = f"; its log: {log_path}" if log_path else ""
        super().__init__(f"{rule} failed (exit status {status}){where}")


def describe(rule, input, output, params, wildcards, log, config) -> dict:
    """The parts of a Snakemake job the workflow scripts use, as JSON (see Job for the way back)."""

    def named(items) -> dict:
        names = getattr(items, "_names", {})
        return {"items": [x if isinstance(x, (dict, list, int, float, bool, type(None))) else str(x)
                          for x in items],
                "names": {name: list(span) for name, span in names.items()}}

    return {"rule": rule, "input": named(input), "output": named(output), "params": named(params),
            "wildcards": named(wildcards), "log": named(log), "config": config}


class Named(list):
    """Snakemake's Namedlist, rebuilt: a list whose named items are also attributes."""

    def __init__(self, spec: dict):
        super().__init__(spec["items"])
        for name, (start, end) in spec["names"].items():
            setattr(self, name, self[start] if end is None else Named({"items": self[start:end], "names": {}}))

    def get(self, name: str, default=None):
        return getattr(self, name, default)


class Job:
    """What a workflow script's ``main(snakemake)`` gets: input, output, params, wildcards, log, rule, config."""

    def __init__(self, spec: dict):
        for key in ("input", "output", "params", "wildcards", "log"):
            setattr(self, key, Named(spec[key]))
        self.rule, self.config = spec["rule"], spec["config"]


def run_step(script: str, rule, input, output, params, wildcards, log, config) -> None:
    """Run workflow script ``script``'s ``main`` for this job in a process of its own; raise StepFailed if
    it fails. Called from a rule's ``run:`` block with the block's own names."""
    from . import warm

    request = {"script": script, "job": describe(rule, input, output, params, wildcards, log, config),
               "cwd": os.getcwd(), "env": dict(os.environ)}
    status = None
    if warm.enabled():
        try:
            status = warm.call(request, _abandoned)
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


def _abandoned() -> bool:
    """Whether to stop waiting and end the job's process: the run was interrupted, or its main thread is
    gone (the job's thread is all that keeps the process alive)."""
    return _INTERRUPTED.is_set() or not threading.main_thread().is_alive()


def _run_cold(request: dict) -> int:
    """Run the job in a fresh interpreter (``python -m sensorcharts.jobs``) and return its exit status."""
    from .warm import scripts_env

    env = scripts_env(request["env"])
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


def run_main(job, script: str) -> int:
    """Import workflow script ``script`` and run its ``main(job)`` with logging to the job's log.

    An error is logged with its traceback, printed as one line naming the rule, and gives status 1. A job
    whose log has an entry named ``benchmark`` gets its process's resource use written there, as
    Snakemake's ``benchmark:`` files are (see write_benchmark).
    """
    import importlib

    started = time.monotonic()
    os.environ.setdefault("MPLBACKEND", "Agg")
    handler = logging.FileHandler(job.log[0], mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        main = importlib.import_module(script).main
        main(job)
    except Exception as exc:  # the job's one-line reason; the details stay in its log
        log.error("%s", "".join(traceback.format_exception(exc)))
        print(f"{job.rule}: {exc}", file=sys.stderr)
        return 1
    finally:
        log.removeHandler(handler)
        handler.close()
    if job.log.get("benchmark"):
        write_benchmark(job.log.benchmark, time.monotonic() - started)
    return 0


BENCHMARK_COLUMNS = ("s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load",
                     "cpu_time")


def write_benchmark(path: str, seconds: float) -> None:
    """Write this process's resource use in the columns of Snakemake's benchmark files.

    Snakemake's ``benchmark:`` would measure its own process, where the ``run:`` block waits: the job's work
    happens here. Peak memory is the process's peak resident set (MB), which for a child of the warm server
    includes the pages it shares with the server; I/O is what the process read and wrote (MB); columns this
    process cannot know are NA.
    """
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    io = {}
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            io = dict(line.split(": ") for line in f.read().splitlines())
    except OSError:  # not Linux
        pass

    def mb(key):
        return f"{int(io[key]) / 2**20:.2f}" if key in io else "NA"

    hms = time.strftime("%H:%M:%S", time.gmtime(seconds))
    row = (f"{seconds:.4f}", hms, f"{own.ru_maxrss / 1024:.2f}", "NA", "NA", "NA", mb("read_bytes"),
           mb("write_bytes"), f"{100 * cpu / seconds:.2f}" if seconds > 0 else "NA", f"{cpu:.2f}")
    atomic.write_text(path, "\t".join(BENCHMARK_COLUMNS) + "\n" + "\t".join(row) + "\n")


def write_json_atomic(data, path: str | os.PathLike) -> None:
    """Write JSON under a temporary name (unique per process and thread) and rename it into place."""
    atomic.write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":  # a job in a fresh interpreter (see _run_cold): the request comes on stdin
    request = json.load(sys.stdin)
    sys.exit(run_main(Job(request["job"]), request["script"]))
