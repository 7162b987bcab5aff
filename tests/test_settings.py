"""The requested range of days and the render kinds, from config dicts built on the schema defaults."""

from __future__ import annotations

import copy
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from sensorcharts.settings import ConfigError, make_plan, normalise, read_scalars
from sensorcharts.timegrid import ORDINARY_LABELS

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def _defaults(schema: dict) -> dict:
    out = {}
    for key, prop in schema.get("properties", {}).items():
        if prop.get("type") == "object" and "properties" in prop:
            out[key] = _defaults(prop)
        elif "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
    return out


DEFAULTS = _defaults(yaml.safe_load(SCHEMA.read_text(encoding="utf-8")))


def config(**overrides) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    cfg.update(overrides)
    return cfg


# 2025-01-15 12:00 in Los Angeles (PST, UTC-8)
NOON_JAN_15 = "2025-01-15T20:00:00+00:00"


def test_schema_defaults_are_what_the_tests_assume():
    assert DEFAULTS["timezone"] == "America/Los_Angeles"
    assert DEFAULTS["default_days"] == 3
    assert DEFAULTS["cumulative_days"] == 30
    assert DEFAULTS["start"] is None and DEFAULTS["end"] is None and DEFAULTS["now"] is None
    assert list(DEFAULTS["sensors"]) == ["temperature", "humidity", "pressure"]


def test_range_is_inclusive():
    plan = make_plan(config(start="2025-01-10", end="2025-01-12", now=NOON_JAN_15))
    assert plan.days == (date(2025, 1, 10), date(2025, 1, 11), date(2025, 1, 12))
    assert plan.sensors == ("temperature", "humidity", "pressure")
    assert plan.window == 30
    assert plan.tz.key == "America/Los_Angeles"


def test_single_day_range():
    plan = make_plan(config(start="2025-01-10", end="2025-01-10", now=NOON_JAN_15))
    assert plan.days == (date(2025, 1, 10),)


def test_start_after_end_is_a_config_error_naming_both():
    with pytest.raises(ConfigError) as info:
        make_plan(config(start="2025-01-12", end="2025-01-10", now=NOON_JAN_15))
    message = str(info.value)
    assert "start" in message and "end" in message
    assert "2025-01-12" in message and "2025-01-10" in message


def test_end_beyond_today_is_clamped_to_today():
    plan = make_plan(config(start="2025-01-13", end="2025-02-01", now=NOON_JAN_15))
    assert plan.today == date(2025, 1, 15)
    assert plan.days == (date(2025, 1, 13), date(2025, 1, 14), date(2025, 1, 15))


def test_range_entirely_in_the_future_has_no_days():
    plan = make_plan(config(start="2025-01-20", end="2025-01-21", now=NOON_JAN_15))
    assert plan.days == ()


def test_without_start_and_end_the_last_default_days_ending_today():
    plan = make_plan(config(now=NOON_JAN_15))
    assert plan.days == (date(2025, 1, 13), date(2025, 1, 14), date(2025, 1, 15))
    plan = make_plan(config(now=NOON_JAN_15, default_days=1))
    assert plan.days == (date(2025, 1, 15),)


def test_only_start_runs_to_today():
    plan = make_plan(config(start="2025-01-11", now=NOON_JAN_15))
    assert plan.days[0] == date(2025, 1, 11) and plan.days[-1] == date(2025, 1, 15)
    assert len(plan.days) == 5


@pytest.mark.parametrize(
    ("now", "tz", "today"),
    [
        ("2025-01-15T05:00:00+00:00", "America/Los_Angeles", date(2025, 1, 14)),  # 21:00 the day before
        ("2025-01-15T08:00:00+00:00", "America/Los_Angeles", date(2025, 1, 15)),  # local midnight exactly
        ("2025-01-15T05:00:00+00:00", "Etc/GMT+8", date(2025, 1, 14)),
        ("2025-01-15T05:00:00+00:00", "Europe/Berlin", date(2025, 1, 15)),
        ("2025-01-14T21:00:00-08:00", "America/Los_Angeles", date(2025, 1, 14)),  # offset given in now
    ],
)
def test_today_is_the_local_date_of_now(now, tz, today):
    plan = make_plan(config(timezone=tz, now=now))
    assert plan.today == today
    assert plan.days[-1] == today


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"timezone": "Nowhere/Atlantis"}, "Nowhere/Atlantis"),
        ({"start": "2025-02-30"}, "start"),
        ({"end": "2025-13-01"}, "end"),
        ({"now": "2025-01-15T12:00:00"}, "now"),  # no offset
        ({"now": "yesterday"}, "now"),
    ],
)
def test_bad_values_are_config_errors_naming_the_key(overrides, key):
    cfg = config(now=NOON_JAN_15)
    cfg.update(overrides)
    with pytest.raises(ConfigError, match=key):
        make_plan(cfg)


# --- render kinds -----------------------------------------------------------------------------------------


def _plan_2025(now: str, tz: str = "America/Los_Angeles"):
    return make_plan(config(timezone=tz, start="2025-01-01", end="2025-12-31", now=now))


def _kind_of(kinds: dict, day: str) -> str | None:
    names = [name for name, (_, dates) in kinds.items() if day in dates]
    assert len(names) <= 1, f"{day} is in several kinds: {names}"
    return names[0] if names else None


def test_render_kinds_separate_dst_days_and_partial_today():
    plan = _plan_2025("2025-12-31T18:30:00+00:00")  # 10:30 PST on 2025-12-31
    kinds = plan.render_kinds()
    spring, fall, today = (_kind_of(kinds, d) for d in ("2025-03-09", "2025-11-02", "2025-12-31"))
    assert None not in (spring, fall, today)
    assert len({spring, fall, today}) == 3
    assert kinds[spring][0] == plan.labels(date(2025, 3, 9))
    assert len(kinds[spring][0]) == 23
    assert len(kinds[fall][0]) == 25 and "T01_2" in kinds[fall][0]
    assert kinds[today] == (tuple(f"T{h:02d}" for h in range(11)), ("2025-12-31",))
    # Every other day of the range is ordinary and in no kind.
    dst_and_today = {"2025-03-09", "2025-11-02", "2025-12-31"}
    for day in plan.days:
        if day.isoformat() not in dst_and_today:
            assert _kind_of(kinds, day.isoformat()) is None, day
    for labels, _ in kinds.values():
        assert labels != ORDINARY_LABELS


def test_render_kinds_group_all_spring_forward_days_together():
    kinds = _plan_2025("2025-12-31T18:30:00+00:00").render_kinds()
    assert _kind_of(kinds, "2024-03-10") == _kind_of(kinds, "2025-03-09")
    assert _kind_of(kinds, "2024-11-03") == _kind_of(kinds, "2025-11-02")


def test_partial_dst_today_is_its_own_kind():
    plan = _plan_2025("2025-11-02T10:15:00+00:00")  # 02:15 PST, the fifth hour of the fall-back day
    kinds = plan.render_kinds()
    name = _kind_of(kinds, "2025-11-02")
    assert kinds[name] == (("T00", "T01", "T01_2", "T02"), ("2025-11-02",))
    assert "2025-11-02" not in {d for n, (_, dates) in kinds.items() if n != name for d in dates}


def test_today_with_all_hours_started_is_ordinary():
    kinds = _plan_2025("2025-12-31T07:59:00+00:00").render_kinds()  # 23:59 PST on 2025-12-30
    assert _kind_of(kinds, "2025-12-30") is None


def test_fixed_offset_zone_has_only_today_as_kind():
    plan = _plan_2025("2025-12-31T18:30:00+00:00", tz="Etc/GMT+8")
    kinds = plan.render_kinds()
    assert list(kinds.values()) == [(tuple(f"T{h:02d}" for h in range(11)), ("2025-12-31",))]


# --- labels of a day ----------------------------------------------------------------------------------------


def test_labels_of_today_are_the_started_hours_and_past_days_are_whole():
    plan = make_plan(config(now="2025-01-15T10:30:00-08:00"))
    assert plan.labels(plan.today) == tuple(f"T{h:02d}" for h in range(11))
    assert plan.labels(plan.today - timedelta(days=1)) == ORDINARY_LABELS


def test_labels_of_today_at_local_midnight_is_first_hour_only():
    plan = make_plan(config(now="2025-01-15T08:00:00+00:00"))
    assert plan.labels(date(2025, 1, 15)) == ("T00",)


def test_window_days_end_on_the_day():
    plan = make_plan(config(now=NOON_JAN_15, cumulative_days=3))
    assert plan.window_days(date(2025, 3, 1)) == [date(2025, 2, 27), date(2025, 2, 28), date(2025, 3, 1)]


# --- nested --config values: Snakemake hands them over as text ------------------------------------------


def test_nested_text_is_read_as_the_type_the_schema_gives():
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    given = {"upload": {"requests_per_minute": "250", "threads": "8", "backoff_seconds": "0.5",
                        "timeout_seconds": "1e2"},
             "sensors": {"temperature": {"display_name": "12", "unit": "", "valid_min": "-40", "valid_max": "null"}},
             "demo": {"seed": "7", "path": "123"}}
    assert normalise(given, schema) == {
        "upload": {"requests_per_minute": 250, "threads": 8, "backoff_seconds": 0.5, "timeout_seconds": 100.0},
        "sensors": {"temperature": {"display_name": "12", "unit": "", "valid_min": -40, "valid_max": None}},
        "demo": {"seed": 7, "path": "123"},  # text where the schema wants text, even when it looks like a number
    }


@pytest.mark.parametrize("text", ["lots", "8 jobs", "0x10", "", "yes"])
def test_text_that_reads_as_no_number_stays_text_for_the_schema_to_report(text):
    assert read_scalars({"threads": text}, {"properties": {"threads": {"type": "integer"}}}) == {"threads": text}


def test_text_reads_as_a_boolean_only_where_the_schema_allows_one():
    schema = {"properties": {"flag": {"type": "boolean"}, "limit": {"type": ["integer", "null"]}}}
    assert read_scalars({"flag": "false", "limit": "~"}, schema) == {"flag": False, "limit": None}
    assert read_scalars({"flag": "1", "limit": "true"}, schema) == {"flag": "1", "limit": "true"}
