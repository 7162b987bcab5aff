"""What runs inside a job's own process, a child of the warm server (warm.py) or a fresh interpreter
(``python -m sensorcharts.jobs``): the job as a workflow script's ``main(snakemake)`` sees it, rebuilt from
JSON, and the run of that ``main`` with the job's log and benchmark.

Below both the warm server and the job runner (jobs.py), which import it; it imports neither.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback

from . import atomic, log


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

