"""Config checks the JSON schema cannot express, the requested range of days, and the database URL.

Standard library only: the Snakefile imports this on every invocation (including dry-runs and lint).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from .timegrid import (
    ORDINARY_LABELS,
    cumulative_window,
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


# What the schema's patterns mean, for messages.
_PATTERN_WORDS = {
    "^[A-Za-z_][A-Za-z0-9_]{0,62}$": "a plain SQL identifier (letters, digits and _, not starting with a digit, "
                                     "at most 63 characters)",
    "^[a-z][a-z0-9_]{0,39}$": "a lower-case identifier (a-z, 0-9 and _, starting with a letter, at most 40 "
                              "characters)",
    "^\\d{4}-\\d{2}-\\d{2}$": "a date written YYYY-MM-DD",
    "^[A-Za-z0-9_./-]+$": "a path of letters, digits, _ . / and -",
}
_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "object": "a mapping",
               "array": "a list", "boolean": "true or false", "null": "null"}


def _shown(key: str, value) -> str:
    """A config value for a message: never a URL's (it may carry a password), never a long dump."""
    if key.rsplit(".", 1)[-1] == "url":
        return f"a value of type {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _nested_setting(path, leaf: str) -> str:
    """``--config 'upload={threads: …}'`` for path ``["upload"]`` and leaf ``threads``."""
    parts = [str(p) for p in path]
    inner = f"{leaf}: …"
    for part in reversed(parts[1:]):
        inner = f"{part}: {{{inner}}}"
    return f"--config '{parts[0]}={{{inner}}}'"


def describe_schema_error(error) -> str:
    """One sentence from a ``jsonschema`` ValidationError: the key (dotted path) and what is allowed."""
    path = ".".join(str(p) for p in error.absolute_path)
    key = path or "the configuration"
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind, allowed, got = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        known = list(schema.get("properties", {}))
        extra = sorted(set(got) - set(known), key=str) if isinstance(got, dict) else []
        where = f" under {path}" if path else ""
        return (f"unknown key {', '.join(repr(k) for k in extra)}{where}; "
                f"the keys allowed{where} are {', '.join(known)}")
    if kind == "type":
        types = [allowed] if isinstance(allowed, str) else list(allowed)
        text = f"{key} must be {' or '.join(_TYPE_WORDS.get(t, t) for t in types)}, got {_shown(key, got)}"
        if "object" in types and path:  # e.g. --config upload=250: say how a nested key is set
            example = next(iter(schema.get("properties", {})), "name")
            text += f"; on the command line a nested key is set as {_nested_setting(error.absolute_path, example)}"
        return text
    if kind == "pattern":
        words = _PATTERN_WORDS.get(allowed, f"text matching {allowed}")
        if "propertyNames" in error.schema_path:
            return f"{got!r} is not allowed as a name under {key}: each name must be {words}"
        return f"{key} must be {words}, got {_shown(key, got)}"
    if kind == "minProperties":
        return f"{key} must not be empty (at least {allowed} entr{'y' if allowed == 1 else 'ies'})"
    if kind == "minLength":
        return f"{key} must not be empty"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        relation = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                    "exclusiveMaximum": "less than"}[kind]
        return f"{key} must be {relation} {allowed}, got {_shown(key, got)}"
    if kind == "enum":
        return f"{key} must be one of {', '.join(repr(a) for a in allowed)}, got {_shown(key, got)}"
    if kind == "required":
        missing = [k for k in allowed if isinstance(got, dict) and k not in got]
        return f"{key} needs the key{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    return f"{key}: {error.message}"


def check_sensor_ranges(sensors: dict) -> None:
    """``valid_min``/``valid_max`` must be finite (null for no bound) and in order."""
    for name, spec in sensors.items():
        low, high = spec.get("valid_min"), spec.get("valid_max")
        for bound, value in (("valid_min", low), ("valid_max", high)):
            if value is not None and not math.isfinite(value):
                raise ConfigError(
                    f"sensors.{name}.{bound} must be a finite number (or null for no bound), got {value!r}")
        if low is not None and high is not None and low > high:
            raise ConfigError(
                f"sensors.{name}.valid_min ({low:g}) is above sensors.{name}.valid_max ({high:g}); "
                "give the lowest plausible value first"
            )


def normalise(config: dict, schema: dict | None = None) -> dict:
    """Give back what ``--config`` and YAML changed on the way in, before the schema checks the config.

    YAML and ``--config`` turn ``2025-01-15`` into a date; the schema wants the text back. And Snakemake reads
    a nested value of ``--config`` (``upload='{requests_per_minute: 250}'``) as text: with ``schema``, text
    where the schema allows no text is read as YAML would read it (:func:`read_scalars`).
    """
    for key in ("start", "end", "now"):
        value = config.get(key)
        if isinstance(value, (date, datetime)):
            config[key] = value.isoformat()
    if schema is not None:
        read_scalars(config, schema)
    return config


# YAML 1.2's core schema: how text reads as an integer, a float, a boolean or null.
_YAML_INT = re.compile(r"[-+]?[0-9]+")
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_YAML_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_YAML_NULL = ("null", "Null", "NULL", "~")


def read_scalars(value, schema: dict):
    """``value`` with every text, where its ``schema`` (JSON schema) allows no text, read as the integer,
    number, boolean or null the schema allows, as YAML would read it; dicts and lists are changed in place.

    Text that reads as none of them stays text, for the schema to report.
    """
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        others = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, others)
            if isinstance(sub, dict):
                value[key] = read_scalars(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value[:] = [read_scalars(item, schema["items"]) for item in value]
    elif isinstance(value, str):
        types = schema.get("type", ())
        types = {types} if isinstance(types, str) else set(types)
        if types and "string" not in types:
            text = value.strip()
            if types & {"integer", "number"} and _YAML_INT.fullmatch(text):
                return int(text)
            if "number" in types and _YAML_FLOAT.fullmatch(text):
                return float(text)
            if "boolean" in types and text in _YAML_BOOL:
                return _YAML_BOOL[text]
            if "null" in types and text in _YAML_NULL:
                return None
    return value


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
        return date_range(cumulative_window(min(days), self.window)[0], max(days))

    def window_days(self, day: date) -> list[date]:
        """The days of the cumulative image of ``day``, oldest first."""
        return cumulative_window(day, self.window)

    def labels(self, day: date) -> tuple[str, ...]:
        """Hour labels of ``day``'s hourly images: the hours that have started."""
        return hour_labels(day, self.tz, self.now if day >= self.today else None)

    def render_kinds(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Group days whose hour labels differ from ``T00``…``T23`` by their label set.

        Returns ``{kind name: (labels, dates)}``; every other day is ordinary. Snakemake needs one rule per
        label set because a rule's outputs are fixed patterns, and DST days and today have other hours.
        """
        # Up to today's year: later days cannot be charted (they have not begun).
        years = [d.year for d in self.days] + [self.today.year]
        special = dict(irregular_days(self.tz.key, min(1970, *years), max(years)))
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
    check_sensor_ranges(config["sensors"])
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
