"""What every ``script:`` job shares: logging to its ``log:`` file and one-sentence failures."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable

log = logging.getLogger("sensorcharts")


def run(snakemake, main: Callable[[object], None]) -> None:
    """Run ``main(snakemake)`` with logging to the job's log; on error, log the traceback, print one line, exit 1."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    handler = logging.FileHandler(snakemake.log[0], mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        main(snakemake)
    except Exception as exc:  # the job's one-line reason; the details stay in its log
        log.error("%s", "".join(traceback.format_exception(exc)))
        print(f"{snakemake.rule}: {exc}", file=sys.stderr)
        sys.exit(1)


def write_json_atomic(data, path: str | os.PathLike) -> None:
    """Write JSON under a temporary name (unique per process and thread) and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
