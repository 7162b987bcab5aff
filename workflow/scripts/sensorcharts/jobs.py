"""What every ``script:`` job shares: logging to its ``log:`` file and one-sentence failures."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback

from . import atomic

log = logging.getLogger("sensorcharts")


def run(snakemake, script) -> None:
    """Run ``main(snakemake)`` of the workflow script named ``script``, then exit with its status.

    Scripts import their heavy modules inside ``main``: with the warm server (see warm.py) the job's own
    interpreter then imports nothing heavy and hands the job to a child of a process that has them
    already; with ``SENSORCHARTS_WARM=0`` it runs here, in the job's own interpreter.
    """
    from . import warm

    if warm.enabled():
        try:
            sys.exit(warm.call(snakemake, script))
        except warm.Unavailable as exc:  # the job still runs, only without the warm start
            print(f"{snakemake.rule}: running in this process ({exc})", file=sys.stderr)
    sys.exit(run_main(snakemake, script))


def run_main(snakemake, script) -> int:
    """Import workflow script ``script`` and run its ``main(snakemake)`` with logging to the job's log.

    An error is logged with its traceback, printed as one line naming the rule, and gives status 1.
    """
    import importlib

    os.environ.setdefault("MPLBACKEND", "Agg")
    handler = logging.FileHandler(snakemake.log[0], mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        main = importlib.import_module(script).main
        main(snakemake)
    except Exception as exc:  # the job's one-line reason; the details stay in its log
        log.error("%s", "".join(traceback.format_exception(exc)))
        print(f"{snakemake.rule}: {exc}", file=sys.stderr)
        return 1
    finally:
        log.removeHandler(handler)
        handler.close()
    return 0


def write_json_atomic(data, path: str | os.PathLike) -> None:
    """Write JSON under a temporary name (unique per process and thread) and rename it into place."""
    atomic.write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
