"""Config checks the JSON schema cannot express, the requested range of days, and the database URL.

Standard library only: the Snakefile imports this on every invocation (including dry-runs and lint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from .timegrid import (
    ORDINARY_LABELS,
    date_range,
    hour_labels,
    irregular_days,
    local_today,
    parse_date,
    parse_now,
    zone,
)


class ConfigError(ValueError):
    """A config value a user must fix; the message names the key."""


def normalise(config: dict) -> dict:
    """YAML and ``--config`` turn ``2025-01-15`` into a date; the schema wants the text back."""
    for key in ("start", "end", "now"):
        value = config.get(key)
        if isinstance(value, (date, datetime)):
            config[key] = value.isoformat()
    return config


@dataclass(frozen=True)
class Plan:
    """What a run is about: the zone, the reference instant, and the local days requested."""

    tz: ZoneInfo
    now: datetime
    today: date
    days: tuple[date, ...]
    sensors: tuple[str, ...]
    window: int
    lookback: int

    @property
    def recent_days(self) -> list[date]:
        """What the cron target brings up to date: today and the look-back days before it."""
        return [self.today - timedelta(days=self.lookback - i) for i in range(self.lookback + 1)]

    def with_windows(self, days) -> list[date]:
        """``days`` and every day in their cumulative windows: what their images depend on."""
        days = list(days)
        if not days:
            return []
        return date_range(min(days) - timedelta(days=self.window - 1), max(days))

    def window_days(self, day: date) -> list[date]:
        """The days of the cumulative image of ``day``, oldest first."""
        return [day - timedelta(days=self.window - 1 - i) for i in range(self.window)]

    def labels(self, day: date) -> tuple[str, ...]:
        """Hour labels of ``day``'s hourly images: the hours that have started."""
        return hour_labels(day, self.tz, self.now if day >= self.today else None)

    def render_kinds(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Group days whose hour labels differ from ``T00``…``T23`` by their label set.

        Returns ``{kind name: (labels, dates)}``; every other day is ordinary. Snakemake needs one rule per
        label set because a rule's outputs are fixed patterns, and DST days and today have other hours.
        """
        years = [d.year for d in self.days] + [self.today.year]
        special = dict(irregular_days(self.tz.key, min(1970, *years), max(2100, *years)))
        special[self.today.isoformat()] = self.labels(self.today)
        by_labels: dict[tuple[str, ...], list[str]] = {}
        for day, labels in sorted(special.items()):
            if labels != ORDINARY_LABELS:
                by_labels.setdefault(labels, []).append(day)
        kinds = {}
        for labels, dates in by_labels.items():
            name = f"{len(labels)}h"
            if self.today.isoformat() in dates and len(dates) == 1:
                name = "today"
            while name in kinds:
                name += "_"
            kinds[name] = (labels, tuple(dates))
        return kinds


def make_plan(config: dict) -> Plan:
    """Check what the schema cannot (zone name, real dates, order) and resolve the range of days."""
    try:
        tz = zone(config["timezone"])
        now = parse_now(config.get("now"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    today = local_today(tz, now)
    start, end = config.get("start"), config.get("end")
    try:
        last = parse_date(end, "end") if end else today
        first = parse_date(start, "start") if start else last - timedelta(days=config["default_days"] - 1)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if first > last:
        raise ConfigError(f"start ({first}) is after end ({last}); give start on or before end")
    last = min(last, today)  # days that have not begun have nothing to chart
    return Plan(
        tz=tz,
        now=now,
        today=today,
        days=tuple(date_range(first, last)) if first <= last else (),
        sensors=tuple(config["sensors"]),
        window=int(config["cumulative_days"]),
        lookback=int(config["lookback_days"]),
    )


def uses_demo_database(config: dict) -> bool:
    return not os.environ.get("DATABASE_URL") and not config["database"].get("url")


def database_url(config: dict) -> str:
    """``DATABASE_URL``, else ``database.url``, else the demo SQLite file (absolute, so jobs agree)."""
    url = os.environ.get("DATABASE_URL") or config["database"].get("url")
    if url:
        return url
    return "sqlite:///" + str(Path(config["demo"]["path"]).resolve())
