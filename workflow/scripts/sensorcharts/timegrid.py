"""Local calendar days and hours, and the UTC instants that bound them.

Readings are stored in UTC; charts are cut into *local* calendar days of one IANA zone. A local day runs
from local midnight to the next local midnight, so it lasts 23, 24 or 25 hours around DST changes. Its
hours are the consecutive one-hour slots from its first instant (the last slot is shorter only in zones
whose DST shift is not a whole hour). Each slot has a **stamp**: the day, ``T`` and the local wall-clock
hour at the slot's start (``2025-11-02T01``); the second slot on a fall-back day that shows an already used
wall-clock hour gets ``_2`` (``2025-11-02T01_2``). Stamps sort chronologically as plain strings.

This module uses only the standard library because the Snakefile imports it to decide targets.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc
HOUR = timedelta(hours=1)
DATE_RE = r"\d{4}-\d{2}-\d{2}"
HOUR_STAMP_RE = r"\d{4}-\d{2}-\d{2}T\d{2}(?:_2)?"


def zone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name`` or raise ValueError with a sentence a user can act on."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"timezone {name!r} is not a known IANA zone name; use one such as 'America/Los_Angeles' or 'Etc/GMT+8'"
        ) from exc


def parse_date(text: str, key: str = "date") -> date:
    """Parse ``YYYY-MM-DD`` strictly (config values, wildcards)."""
    if isinstance(text, date):
        return text
    if not re.fullmatch(DATE_RE, str(text)):
        raise ValueError(f"{key} must be a date written YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(str(text))
    except ValueError as exc:
        raise ValueError(f"{key} {text!r} is not a real calendar date") from exc


def local_midnight_utc(day: date, tz: ZoneInfo) -> datetime:
    """First instant of local ``day`` in UTC.

    Where a zone skips midnight itself (DST starting at 00:00), ``fold=0`` reads the missing wall time with
    the offset in force before the change, which lands on the first instant that does exist.
    """
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC ``[start, end)`` of local ``day``: the bounds every query of that day uses."""
    return local_midnight_utc(day, tz), local_midnight_utc(day + timedelta(days=1), tz)


def query_bounds(day: date, tz: ZoneInfo, now: datetime | None = None) -> tuple[datetime, datetime]:
    """UTC ``[start, end)`` that the extract and the fingerprint of local ``day`` read.

    The day's bounds, with ``end`` cut at ``now`` (truncated to the whole second) when ``now`` falls inside
    the day: a reading stamped in the future (a wrong device clock) is not part of today until its time
    has come, so it neither shows on today's charts nor changes today's fingerprint on every run.
    """
    start, end = day_bounds(day, tz)
    if now is not None:
        cutoff = now.astimezone(UTC).replace(microsecond=0)
        end = max(start, min(end, cutoff))
    return start, end


def iso_local(instant: datetime, tz: ZoneInfo) -> str:
    """ISO 8601 with the local offset, e.g. ``2025-01-15T00:00:00-08:00``."""
    return instant.astimezone(tz).isoformat(timespec="seconds")


@dataclass(frozen=True)
class HourSlot:
    """One local hour of a day: its stamp and UTC bounds."""

    stamp: str
    start: datetime  # UTC
    end: datetime  # UTC

    def local_start(self, tz: ZoneInfo) -> datetime:
        return self.start.astimezone(tz)


def hour_slots(day: date, tz: ZoneInfo, now: datetime | None = None) -> list[HourSlot]:
    """The hour slots of local ``day``; with ``now``, only those that have started by then."""
    start, end = day_bounds(day, tz)
    slots: list[HourSlot] = []
    seen: set[str] = set()
    t = start
    while t < end and (now is None or t <= now):
        wall = t.astimezone(tz)
        label = f"{day.isoformat()}T{wall.hour:02d}"
        stamp = label + "_2" if label in seen else label
        seen.add(label)
        slots.append(HourSlot(stamp, t, min(t + HOUR, end)))
        t += HOUR
    return slots


def hour_labels(day: date, tz: ZoneInfo, now: datetime | None = None) -> tuple[str, ...]:
    """The part of each slot's stamp after the date (``T00`` … ``T23``, ``T01_2``)."""
    return tuple(s.stamp[10:] for s in hour_slots(day, tz, now))


ORDINARY_LABELS = tuple(f"T{h:02d}" for h in range(24))


@functools.lru_cache(maxsize=8)
def irregular_days(tz_name: str, first_year: int = 1970, last_year: int = 2100) -> dict[str, tuple[str, ...]]:
    """Every day in the years given whose hours are not ``T00``…``T23`` (DST changes), with its labels.

    One pass over ~48,000 days takes about 0.1 s; the Snakefile needs it to declare each day's
    hourly images before anything runs.
    """
    tz = zone(tz_name)
    found: dict[str, tuple[str, ...]] = {}
    day = date(first_year, 1, 1)
    stop = date(last_year, 12, 31)
    one_day = timedelta(days=1)
    prev_offset = datetime(day.year, day.month, day.day, tzinfo=tz).utcoffset()
    while day <= stop:
        nxt = day + one_day
        offset = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).utcoffset()
        # A day is regular when it starts and ends at the same offset and its midnight exists; checking
        # noon as well catches a change and change-back within the day (rare, but cheap to catch).
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz).utcoffset()
        if offset != prev_offset or noon != prev_offset:
            labels = hour_labels(day, tz)
            if labels != ORDINARY_LABELS:
                found[day.isoformat()] = labels
        prev_offset = offset
        day = nxt
    return found


def alternation(words) -> str:
    """A regex matching exactly ``words`` (literal strings), factorized by common prefixes.

    ``2025-03-09|2025-11-02`` becomes ``2025-(?:03-09|11-02)``: Snakemake matches every file of the DAG
    against every output pattern, and a flat list of a century's DST dates in each pattern costs seconds.
    """
    words = sorted(set(words))
    if not words:
        return "(?!)"  # matches nothing
    if words == [""]:
        return ""
    first = {}
    for word in words:
        first.setdefault(word[:1], []).append(word[1:])
    branches = []
    optional = False
    for head, tails in first.items():
        if head == "":
            optional = True
            continue
        branches.append(("-" if head == "-" else re.escape(head)) + alternation(tails))
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if optional else body


def local_today(tz: ZoneInfo, now: datetime) -> date:
    return now.astimezone(tz).date()


def date_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def cumulative_window(day: date, days: int) -> list[date]:
    """The ``days`` local days a cumulative image of ``day`` shows: the window ending on ``day``, oldest first."""
    return date_range(day - timedelta(days=days - 1), day)


def parse_now(text: str | None) -> datetime:
    """The reference instant: ``text`` (ISO 8601 with an offset) or the real clock."""
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise ValueError(f"now must be an ISO 8601 instant such as 2025-01-15T12:00:00+00:00, got {text!r}") from exc
    if value.tzinfo is None:
        raise ValueError(f"now must carry a UTC offset (for example +00:00), got {text!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class ClockChange:
    """A change of the zone's UTC offset inside a period, as a person reads it on a clock."""

    instant: datetime  # UTC, the first instant with the new offset
    before: str  # wall clock just before, e.g. "02:00 PDT" (the time that never shows)
    after: str  # wall clock at the instant, e.g. "01:00 PST"
    forward: bool  # clocks jump forward (spring) rather than back (autumn)

    @property
    def text(self) -> str:
        return f"clocks {'forward' if self.forward else 'back'}: {self.before} → {self.after}"


def clock_changes(start: datetime, end: datetime, tz: ZoneInfo) -> list[ClockChange]:
    """Every offset change of ``tz`` in ``[start, end)``, found to the second (half-hour zones included)."""
    changes = []
    second = timedelta(seconds=1)
    last = end - second  # the last probe point inside the period
    lo = start
    while lo < last:
        hi = min(lo + HOUR, last)
        old, new = lo.astimezone(tz).utcoffset(), hi.astimezone(tz).utcoffset()
        if old != new:  # narrow to the first second with the new offset
            a, b = lo, hi
            while b - a > second:
                mid = (a + (b - a) / 2).replace(microsecond=0)
                a, b = (mid, b) if mid.astimezone(tz).utcoffset() == old else (a, mid)
            wall = b.astimezone(tz)
            changes.append(ClockChange(b, f"{b.astimezone(timezone(old)):%H:%M} {a.astimezone(tz).tzname()}",
                                       f"{wall:%H:%M} {wall.tzname()}", new > old))
        lo = hi
    return changes


def zone_abbreviations(start: datetime, end: datetime, tz: ZoneInfo) -> str:
    """Zone abbreviation(s) in force over ``[start, end)``: ``PST``, or ``PDT/PST`` on a change day."""
    names: list[str] = []
    t = start
    while t < end:
        name = t.astimezone(tz).tzname() or ""
        if name not in names:
            names.append(name)
        t += HOUR
    last = (end - timedelta(microseconds=1)).astimezone(tz).tzname() or ""
    if last not in names:
        names.append(last)
    return "/".join(names)
