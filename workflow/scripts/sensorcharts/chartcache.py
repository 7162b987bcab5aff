"""Charts whose inputs did not change are copied, not drawn: a digest of the inputs, and a cache of PNG bytes.

A cron run every 5 minutes brings today up to date: the day's readings changed, so its render job runs, and
Snakemake deletes all the job's charts first. Only the daily charts and the current hour's charts show the
new readings; every other hourly chart would come out byte for byte as before. Each chart's
``inputs_digest`` covers everything its PNG follows from: what is drawn (readings as arrays, axes, labels,
title), the PNG's text, the code that draws (this package's chart modules) and the libraries' versions. The
job keeps the bytes of the charts of the days a cron run touches (today and the look-back days) in
``.snakemake/chart-cache/{kind}/{date}/{digest}.png`` (local state, like ``.snakemake/pinata-rate``, not a
result), as hard links to the charts where the file system allows (no second copy while the charts are
there; charts deleted after their upload stay readable), and copies a chart from there when its digest is
found, even when the uploaded chart itself was deleted.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import zlib
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from . import atomic
from .timegrid import local_today, parse_now

CACHE_ROOT = Path(".snakemake/chart-cache")
PACKAGE = Path(__file__).resolve().parent
# The modules whose code turns a chart's inputs into its bytes (the inputs themselves are digested as values:
# readings as arrays, labels as text, so the modules computing them need not be).
DRAWING_MODULES = ("aggcanvas", "chartbase", "chartcache", "charts", "heatmap", "linechart", "png")


@functools.lru_cache(maxsize=2)
def code_key(package: Path = PACKAGE) -> bytes:
    """Digest of the drawing code and of the versions of what it runs on (Python, numpy, matplotlib, seaborn,
    FreeType, zlib): a chart drawn by other software is another chart."""
    import matplotlib
    import seaborn
    from matplotlib import ft2font

    digest = hashlib.sha256()
    for module in DRAWING_MODULES:
        digest.update((package / f"{module}.py").read_bytes())
    versions = (sys.version, np.__version__, matplotlib.__version__, seaborn.__version__,
                ft2font.__freetype_version__, zlib.ZLIB_RUNTIME_VERSION)
    digest.update(repr(versions).encode())
    return digest.digest()


def _feed(digest, value) -> None:
    """Add ``value`` (arrays, numbers, strings, None, and lists, tuples and dicts of them) unambiguously."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"a{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    elif isinstance(value, (list, tuple)):
        digest.update(f"l{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, dict):
        _feed(digest, list(value.items()))
    elif value is None or isinstance(value, (str, int, float, bool)):
        text = repr(value).encode()
        digest.update(f"{type(value).__name__}{len(text)}:".encode() + text)
    else:
        raise TypeError(f"cannot digest a {type(value).__name__}")


def digest(*parts) -> str:
    """Hex digest of ``parts`` and of the drawing code (see code_key)."""
    d = hashlib.blake2b(code_key(), digest_size=16)
    _feed(d, parts)
    return d.hexdigest()


class ChartCache:
    """PNG bytes by inputs digest, for one render job's kind (``day`` or ``cumulative``) and date.

    Only the days a cron run brings up to date are kept (``first_kept`` onwards): older days are rarely
    drawn again, and caching a backfill would double its files. Each job keeps just the charts it made.
    """

    def __init__(self, kind: str, day: date, first_kept: date, root: str | os.PathLike = CACHE_ROOT):
        self.kinds = Path(root) / kind
        self.folder = self.kinds / day.isoformat()
        self.first_kept = first_kept
        self.made: set[str] = set()

    @classmethod
    def for_day(cls, kind: str, day: date, first_kept: date, root: str | os.PathLike = CACHE_ROOT):
        """The cache of ``day``, or None when it is older than ``first_kept``."""
        return cls(kind, day, first_kept, root) if day >= first_kept else None

    @classmethod
    def for_job(cls, kind: str, day: date, tz: ZoneInfo, config: dict):
        """The cache of a render job for ``day``, kept for the days the cron target brings up to date (today
        and config ``lookback_days`` before it, as settings.Plan.recent_days); None for other days."""
        if config.get("lookback_days") is None:
            return None
        today = local_today(tz, parse_now(config.get("now")))
        return cls.for_day(kind, day, today - timedelta(days=int(config["lookback_days"])))

    def get(self, key: str) -> bytes | None:
        try:
            return (self.folder / f"{key}.png").read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, chart: str | os.PathLike) -> None:
        """Keep ``chart``'s bytes under ``key`` (the chart was just written whole): a hard link to it, so that
        the kept bytes take no room of their own while the chart exists (a copied chart is a new file: its
        old bytes are let go)."""
        self.made.add(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic.replacing(self.folder / f"{key}.png") as tmp:
            try:
                os.link(chart, tmp)
            except OSError:  # no hard links here (another file system, or not supported)
                shutil.copyfile(chart, tmp)

    def prune(self) -> None:
        """Drop this day's charts that the job did not make, and the folders of days no longer kept."""
        if self.folder.is_dir():
            for entry in self.folder.iterdir():
                if entry.suffix == ".png" and entry.stem not in self.made:
                    entry.unlink(missing_ok=True)
        for folder in self.kinds.iterdir() if self.kinds.is_dir() else ():
            if folder.name < self.first_kept.isoformat():
                shutil.rmtree(folder, ignore_errors=True)
