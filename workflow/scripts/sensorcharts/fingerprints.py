"""Per-day fingerprints of the database, so Snakemake's file-based DAG follows the rows.

A fingerprint is the number of rows of the configured sensors in a local day plus an order-independent
digest of their contents (the sum of a hash of every row). Any insert, update or delete in the day changes
it. Fingerprints of a block of days come from **one** set-based query (a join of the readings with a list
of the days' UTC bounds), and each day's file ``results/fingerprints/{date}.txt`` is rewritten only when its
content changes. ``extract_day`` takes that file as input: a changed file is newer and has a new checksum, so
Snakemake redoes that day and whatever depends on it, and nothing else.

The bounds are the extract's (:func:`sensorcharts.timegrid.query_bounds`): today ends at ``now``, so a row
stamped in the future changes nothing until its time has come, instead of redoing today on every run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from . import atomic
from .connection import Source, database_errors, sqlite_deadline, table_has_device
from .timegrid import cumulative_window, query_bounds


def _sqlite_row_digest(*fields) -> int:
    # 31 bits, so SQLite's 64-bit integer sum() cannot overflow below 2**32 rows.
    text = "|".join("\\N" if f is None else repr(f) if isinstance(f, float) else str(f) for f in fields)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") >> 1


def _query(source: Source, dialect: str, days: int, sensors: int) -> str:
    t, s, v = source.time_column, source.sensor_column, source.value_column
    d = source.device_column
    bounds = ", ".join(["(%s, %s, %s)"] * days)
    in_list = ", ".join(["%s"] * sensors)
    if dialect == "postgresql":
        device = f", coalesce(r.{d}::text, '\\N')" if d else ""
        digest = (
            f"coalesce(sum(('x' || substr(md5(concat_ws('|', r.{t}::text, r.{s}, "
            f"coalesce(r.{v}::text, '\\N'){device})), 1, 15))::bit(60)::bigint), 0)"
        )
        bounds = ", ".join(["(%s::text, %s::timestamptz, %s::timestamptz)"] * days)
        newest = f"max(r.{t})"
    else:
        device = f", r.{d}" if d else ""
        digest = f"coalesce(sum(row_digest(r.{t}, r.{s}, r.{v}{device})), 0)"
        # Text compares as text: '…T19:00Z' sorts after '… 20:00'. strftime gives every ISO 8601 form (T, Z,
        # an offset) as UTC in one form, and NULL for text that is not a time, which max() skips.
        newest = f"max(strftime('%Y-%m-%d %H:%M:%f', r.{t}))"
    return (
        f"WITH bounds(day, lo, hi) AS (VALUES {bounds}) "
        f"SELECT b.day, r.{s}, count(r.{s}), {digest}, {newest} FROM bounds b "
        f"LEFT JOIN {source.table} r ON r.{t} >= b.lo AND r.{t} < b.hi AND r.{s} IN ({in_list}) "
        f"GROUP BY b.day, r.{s}"
    )


@dataclass
class Survey:
    """What one query tells about a block of days: ``lines``, ``{YYYY-MM-DD: fingerprint line}``, and
    ``newest``, ``{sensor: time of its newest reading in those days}`` (UTC; sensors without one left out)."""

    lines: dict[str, str]
    newest: dict[str, datetime]


def compute(
    source: Source, sensors: list[str], days: list[date], tz: ZoneInfo, now: datetime | None = None
) -> dict[str, str]:
    """``{YYYY-MM-DD: fingerprint line}`` for ``days``, from one query; a day that contains ``now`` ends there
    (the fingerprints alone, for tests and benchmarks; the workflow calls :func:`survey`)."""
    return survey(source, sensors, days, tz, now).lines


def survey(
    source: Source, sensors: list[str], days: list[date], tz: ZoneInfo, now: datetime | None = None
) -> Survey:
    """The fingerprints of ``days`` and each sensor's newest reading in them, from one query (a day that
    contains ``now`` ends there, so a reading stamped in the future is neither counted nor newest).

    Database failures raise the package's one-sentence errors (``sensorcharts.connection.DATABASE_ERRORS``).
    """
    engine = source.connect()
    try:
        with database_errors(source):
            with_device = table_has_device(engine, source)
            if not with_device and source.device_column:
                source = Source(source.url, source.table, source.time_column, source.sensor_column,
                                source.value_column, None, source.statement_timeout, source.connect_timeout)
            dialect = source.dialect
            params: list = []
            for day in days:
                lo, hi = query_bounds(day, tz, now)
                if dialect == "postgresql":
                    params += [day.isoformat(), lo, hi]
                else:  # SQLite's documented text format, compared as text
                    params += [day.isoformat(), lo.strftime("%Y-%m-%d %H:%M:%S"), hi.strftime("%Y-%m-%d %H:%M:%S")]
            params += list(sensors)
            sql = _query(source, dialect, len(days), len(sensors))
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                if dialect == "postgresql":  # the session is in UTC (see database.connect)
                    cur.execute(sql, params)
                    return _survey(cur.fetchall())
                raw.driver_connection.create_function("row_digest", -1, _sqlite_row_digest, deterministic=True)
                with sqlite_deadline(raw, source.statement_timeout):
                    cur.execute(sql.replace("%s", "?"), params)
                    return _survey(cur.fetchall())
            finally:
                raw.close()
    finally:
        engine.dispose()


def _survey(rows) -> Survey:
    """Rows per (day, sensor) summed into each day's line: the digest is a sum over rows, so the day's is the
    sum of its sensors' (a day without readings has one row, with no sensor)."""
    counts: dict[str, int] = {}
    digests: dict[str, int] = {}
    newest: dict[str, datetime] = {}
    for day, sensor, count, digest, last in rows:
        day = str(day)
        counts[day] = counts.get(day, 0) + count
        digests[day] = digests.get(day, 0) + int(digest)
        last = _as_utc(last)
        if last is not None:
            newest[sensor] = max(last, newest.get(sensor, last))
    lines = {day: f"rows={counts[day]} digest={digests[day]}\n" for day in counts}
    return Survey(lines, newest)


def _as_utc(value) -> datetime | None:
    """A time column's value as an aware UTC datetime: PostgreSQL gives datetimes (naive ones are UTC by
    contract); SQLite gives UTC text (strftime's). None for no value or anything else."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def write_changed(fingerprints: dict[str, str], folder: str | os.PathLike) -> list[str]:
    """Write each day's fingerprint file only when its content differs; return the days written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for day, line in sorted(fingerprints.items()):
        path = folder / f"{day}.txt"
        try:
            if path.read_text() == line:
                continue
        except FileNotFoundError:
            pass
        atomic.write_text(path, line)
        written.append(day)
    return written


class Refresher:
    """Brings fingerprint files up to date lazily, one query per block of days, once per invocation.

    Snakemake calls :meth:`path` (an input function) for every day in the DAG. The first call for a day
    queries the whole block that contains it: the cron window (today, the look-back and the cumulative
    windows of those days) or the requested range with its windows; a day in neither (a target asked for by
    path) brings its own cumulative window. Only the main Snakemake process queries; jobs on a cluster see
    the files already written. ``compute_block(days)`` returns a :class:`Survey`; each sensor's newest reading
    in the days queried so far is kept in :attr:`newest`.
    """

    def __init__(self, compute_block, folder: str, blocks: list[list[date]], window: int, active: bool,
                 after_write=None):
        self.compute_block = compute_block
        self.after_write = after_write  # called with the folder whenever files were written
        self.folder = folder
        self.blocks = [set(b) for b in blocks]
        self.window = window
        self.active = active
        self.done: set[date] = set()
        self.lines: dict[str, str] = {}  # what this invocation computed, so has_rows reads no file
        self.newest: dict[str, datetime] = {}

    def path(self, day: date) -> str:
        if self.active and day not in self.done:
            block = next((b for b in self.blocks if day in b), None)
            if block is None:
                block = set(cumulative_window(day, self.window))
            days = sorted(block - self.done)
            computed = self.compute_block(days)
            self.lines.update(computed.lines)
            for sensor, last in computed.newest.items():
                self.newest[sensor] = max(last, self.newest.get(sensor, last))
            written = write_changed(computed.lines, self.folder)
            self.done.update(days)
            if written and self.after_write is not None:
                self.after_write(self.folder)
        return f"{self.folder}/{day.isoformat()}.txt"

    def has_rows(self, day: date) -> bool:
        """Whether ``day`` has readings of the configured sensors (True when unknown: no fingerprint file)."""
        path = Path(self.path(day))
        text = self.lines.get(day.isoformat())
        if text is None:  # inactive (demo database, cluster job): the main process wrote the file, if any
            try:
                text = path.read_text()
            except FileNotFoundError:
                return True
        return not text.startswith("rows=0 ")
