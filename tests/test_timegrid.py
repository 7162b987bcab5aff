"""Local days, their hour slots and stamps, around DST changes and in a fixed-offset zone."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from conftest import utc

from sensorcharts.timegrid import (
    alternation,
    clock_changes,
    cumulative_window,
    day_bounds,
    hour_labels,
    hour_slots,
    irregular_days,
    iso_local,
    parse_date,
    zone,
    zone_abbreviations,
)

LA = zone("America/Los_Angeles")
FIXED = zone("Etc/GMT+8")
BERLIN = zone("Europe/Berlin")

ORDINARY = date(2025, 1, 15)
SPRING = date(2025, 3, 9)
FALL = date(2025, 11, 2)


def _labels(day, tz, now=None):
    return [s.stamp[10:] for s in hour_slots(day, tz, now)]


# --- bounds and slots of one day ------------------------------------------------------------------------


def test_ordinary_day_has_24_hours_from_08z_to_08z():
    assert day_bounds(ORDINARY, LA) == (utc(2025, 1, 15, 8), utc(2025, 1, 16, 8))
    slots = hour_slots(ORDINARY, LA)
    assert [s.stamp for s in slots] == [f"2025-01-15T{h:02d}" for h in range(24)]
    assert slots[0].start == utc(2025, 1, 15, 8)
    assert slots[-1].end == utc(2025, 1, 16, 8)


def test_spring_forward_day_has_23_hours_without_t02():
    assert day_bounds(SPRING, LA) == (utc(2025, 3, 9, 8), utc(2025, 3, 10, 7))
    labels = _labels(SPRING, LA)
    assert len(labels) == 23
    assert "T02" not in labels
    assert labels[:3] == ["T00", "T01", "T03"]
    assert labels[-1] == "T23"


def test_fall_back_day_has_25_hours_with_distinct_t01_and_t01_2():
    assert day_bounds(FALL, LA) == (utc(2025, 11, 2, 7), utc(2025, 11, 3, 8))
    slots = {s.stamp: s for s in hour_slots(FALL, LA)}
    assert len(slots) == 25
    first, second = slots["2025-11-02T01"], slots["2025-11-02T01_2"]
    assert first.start == utc(2025, 11, 2, 8)
    assert first.local_start(LA).utcoffset() == timedelta(hours=-7)
    assert iso_local(first.start, LA) == "2025-11-02T01:00:00-07:00"
    assert second.start == utc(2025, 11, 2, 9)
    assert second.local_start(LA).utcoffset() == timedelta(hours=-8)
    assert iso_local(second.start, LA) == "2025-11-02T01:00:00-08:00"
    assert _labels(FALL, LA)[:4] == ["T00", "T01", "T01_2", "T02"]


@pytest.mark.parametrize("day", [ORDINARY, SPRING, FALL], ids=str)
def test_slots_are_contiguous_one_hour_steps_covering_the_day(day):
    start, end = day_bounds(day, LA)
    slots = hour_slots(day, LA)
    assert slots[0].start == start and slots[-1].end == end
    for a, b in zip(slots, slots[1:]):
        assert a.end == b.start
        assert a.end - a.start == timedelta(hours=1)


@pytest.mark.parametrize("day", [SPRING, FALL], ids=str)
def test_fixed_offset_zone_has_ordinary_days_on_dst_dates(day):
    start, end = day_bounds(day, FIXED)
    assert start == utc(day.year, day.month, day.day, 8)
    assert end - start == timedelta(hours=24)
    assert _labels(day, FIXED) == [f"T{h:02d}" for h in range(24)]


@pytest.mark.parametrize("day", [ORDINARY, SPRING, FALL], ids=str)
def test_stamps_sort_chronologically_as_strings(day):
    slots = hour_slots(day, LA)
    stamps = [s.stamp for s in slots]
    assert len(set(stamps)) == len(stamps)
    assert sorted(stamps) == stamps  # slots are in time order, so string order equals time order
    # and across a day boundary as well
    next_day = hour_slots(day + timedelta(days=1), LA)[0].stamp
    assert max(stamps) < next_day


def test_berlin_fall_back_repeats_t02():
    labels = _labels(date(2025, 10, 26), BERLIN)
    assert len(labels) == 25
    assert labels[:5] == ["T00", "T01", "T02", "T02_2", "T03"]


# --- `now` limits the hours to those that have started --------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2025, 1, 15, 7, 59, 59), []),  # before local midnight: nothing has started
        (utc(2025, 1, 15, 8), ["T00"]),  # an hour starting exactly at `now` has started
        (utc(2025, 1, 15, 8, 0, 1), ["T00"]),
        (utc(2025, 1, 15, 10, 30), ["T00", "T01", "T02"]),
        (utc(2025, 1, 15, 11), ["T00", "T01", "T02", "T03"]),
        (utc(2025, 2, 1), [f"T{h:02d}" for h in range(24)]),  # long after: the whole day
    ],
)
def test_now_limits_slots_to_started_hours(now, expected):
    assert _labels(ORDINARY, LA, now) == expected
    assert list(hour_labels(ORDINARY, LA, now)) == expected


def test_now_on_fall_back_day_reaches_second_t01_at_09z():
    assert _labels(FALL, LA, utc(2025, 11, 2, 8, 59)) == ["T00", "T01"]
    assert _labels(FALL, LA, utc(2025, 11, 2, 9)) == ["T00", "T01", "T01_2"]


# --- calendar scans --------------------------------------------------------------------------------------


def test_irregular_days_of_2025_in_los_angeles():
    found = irregular_days("America/Los_Angeles", 2025, 2025)
    assert set(found) == {"2025-03-09", "2025-11-02"}
    assert len(found["2025-03-09"]) == 23
    assert len(found["2025-11-02"]) == 25
    assert "T01_2" in found["2025-11-02"]


def test_irregular_days_of_fixed_offset_zone_are_none():
    assert irregular_days("Etc/GMT+8", 2025, 2025) == {}


# --- formatting and parsing -------------------------------------------------------------------------------


def test_iso_local_uses_local_offset():
    assert iso_local(utc(2025, 1, 15, 8), LA) == "2025-01-15T00:00:00-08:00"
    assert iso_local(utc(2025, 7, 1, 7), LA) == "2025-07-01T00:00:00-07:00"


def test_zone_rejects_unknown_name():
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        zone("Mars/Olympus_Mons")


@pytest.mark.parametrize("text", ["2025-13-01", "2025/01/01", "2025-02-30", "25-01-01", ""])
def test_parse_date_rejects_bad_text(text):
    with pytest.raises(ValueError):
        parse_date(text)


def test_parse_date_accepts_iso_date():
    assert parse_date("2025-01-15") == date(2025, 1, 15)


def test_parse_date_error_names_key():
    with pytest.raises(ValueError, match="start"):
        parse_date("2025/01/01", "start")


@pytest.mark.parametrize(
    ("day", "expected"), [(FALL, "PDT/PST"), (SPRING, "PST/PDT"), (ORDINARY, "PST"), (date(2025, 7, 1), "PDT")],
    ids=str,
)
def test_zone_abbreviations(day, expected):
    assert zone_abbreviations(*day_bounds(day, LA), LA) == expected


@pytest.mark.parametrize(
    ("zone_name", "day", "instant", "text"),
    [
        ("America/Los_Angeles", FALL, "2025-11-02T09:00:00+00:00", "clocks back: 02:00 PDT → 01:00 PST"),
        ("America/Los_Angeles", SPRING, "2025-03-09T10:00:00+00:00", "clocks forward: 02:00 PST → 03:00 PDT"),
        ("Europe/Berlin", date(2025, 3, 30), "2025-03-30T01:00:00+00:00", "clocks forward: 02:00 CET → 03:00 CEST"),
        # Half-hour shift, found to the second: Lord Howe Island goes from +11 to +10:30.
        ("Australia/Lord_Howe", date(2025, 4, 6), "2025-04-05T15:00:00+00:00", "clocks back: 02:00 +11 → 01:30 +1030"),
    ],
)
def test_clock_changes_of_a_change_day(zone_name, day, instant, text):
    tz = zone(zone_name)
    (change,) = clock_changes(*day_bounds(day, tz), tz)
    assert change.instant.isoformat() == instant
    assert change.text == text
    assert change.forward == ("forward" in text)


@pytest.mark.parametrize(("tz", "day"), [(LA, ORDINARY), (LA, SPRING + timedelta(days=1)), (FIXED, FALL)])
def test_no_clock_change_on_ordinary_days(tz, day):
    assert clock_changes(*day_bounds(day, tz), tz) == []


def test_alternation_matches_exactly_its_words():
    import re

    dates = [d for d in irregular_days("America/Los_Angeles", 1970, 2030)]
    pattern = re.compile(f"(?:{alternation(dates)})\\Z")
    assert all(pattern.match(d) for d in dates)
    near = ["2025-03-10", "2025-11-0", "2025-11-022", "1970-01-01", "2031-03-09", ""]
    assert not any(pattern.match(d) for d in near)
    assert len(alternation(dates)) < len("|".join(dates))  # factorized
    assert re.fullmatch(alternation(["a", "ab", "abc", "b"]), "ab") and not re.fullmatch(alternation([]), "")


def test_cumulative_window_ends_on_its_day_across_a_month_and_a_year():
    assert cumulative_window(date(2025, 3, 1), 3) == [date(2025, 2, 27), date(2025, 2, 28), date(2025, 3, 1)]
    assert cumulative_window(date(2025, 1, 1), 2) == [date(2024, 12, 31), date(2025, 1, 1)]
    assert cumulative_window(date(2025, 1, 1), 1) == [date(2025, 1, 1)]
