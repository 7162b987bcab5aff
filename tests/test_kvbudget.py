"""The KV write budget's policy, simulated over whole UTC days without a network."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sensorcharts.kvbudget import allowance, dated_keys_due, next_utc_midnight
from sensorcharts.timegrid import zone

LA = zone("America/Los_Angeles")
UTC = timezone.utc
LATEST_KEYS = 9  # 3 sensors x daily, hourly, cumulative


def simulate_day(limit: int, backlog: int, step_min: int = 5, day=datetime(2025, 5, 2, tzinfo=UTC)):
    """Cron runs every ``step_min`` minutes over one UTC day of 3 sensors in Los Angeles, each latest pointer
    changing every run; ``backlog`` dated keys wait at midnight (a backfill). Returns what was spent."""
    used, refreshed, waiting, written_dated, refreshes, due = 0, None, backlog, 0, [], 0
    t = day
    while t < day + timedelta(days=1):
        # keys that fell due since the last run (periods ending at this very instant included)
        new = dated_keys_due(t - timedelta(minutes=step_min), t + timedelta(microseconds=1), LA, 3, 2) if t > day else 0
        waiting += new
        due += new
        a = allowance(limit=limit, used=used, exhausted=False, now=t, dated_waiting=waiting,
                      dated_due_later=dated_keys_due(t, next_utc_midnight(t), LA, 3, 2),
                      latest_keys=LATEST_KEYS, latest_changed=LATEST_KEYS, latest_refreshed_at=refreshed)
        used += a.dated
        waiting -= a.dated
        written_dated += a.dated
        if a.latest:
            used += LATEST_KEYS
            refreshed = t
            refreshes.append(t)
        t += timedelta(minutes=step_min)
    return used, waiting, written_dated, refreshes, due


def test_a_steady_cron_day_stays_within_the_free_plan_and_keeps_every_dated_key():
    used, waiting, dated, refreshes, due = simulate_day(1000, backlog=0)
    assert used <= 1000
    assert due >= 3 * 23 + 3 * 2 + 3 * 26  # hours, daily+cumulative, the day leaving the window
    assert waiting == 0 and dated == due  # each got its dated key the same day
    # The latest pointers spend the rest, spread over the day: ~90 refreshes, never an hour apart.
    assert len(refreshes) >= 80
    gaps = [b - a for a, b in zip(refreshes, refreshes[1:])]
    assert max(gaps) <= timedelta(minutes=30)


def test_a_backfill_waits_for_later_days_without_starving_latest():
    used, waiting, dated, refreshes, due = simulate_day(1000, backlog=2340)
    assert used <= 1000
    assert 600 <= dated < 2340 and waiting == 2340 + due - dated  # the rest waits, none lost
    gaps = [b - a for a, b in zip(refreshes, refreshes[1:])]
    assert len(refreshes) >= 20 and max(gaps) <= timedelta(minutes=70)  # about hourly, all day


def test_a_day_already_spent_writes_nothing_until_midnight():
    t = datetime(2025, 5, 2, 15, 0, tzinfo=UTC)
    a = allowance(limit=1000, used=1000, exhausted=False, now=t, dated_waiting=50, dated_due_later=10,
                  latest_keys=9, latest_changed=9, latest_refreshed_at=t - timedelta(hours=3))
    assert (a.dated, a.latest, a.next_latest_at) == (0, False, next_utc_midnight(t))
    assert "50 dated key(s) wait" in a.reason


def test_cloudflare_saying_10048_stops_writes_for_the_day_whatever_the_count():
    t = datetime(2025, 5, 2, 15, 0, tzinfo=UTC)
    a = allowance(limit=1000, used=10, exhausted=True, now=t, dated_waiting=5, dated_due_later=0,
                  latest_keys=9, latest_changed=9, latest_refreshed_at=None)
    assert (a.dated, a.latest) == (0, False) and "00:00 UTC" in a.reason


def test_no_budget_writes_everything_every_run():
    t = datetime(2025, 5, 2, 15, 0, tzinfo=UTC)
    a = allowance(limit=None, used=10**6, exhausted=False, now=t, dated_waiting=5000, dated_due_later=100,
                  latest_keys=9, latest_changed=3, latest_refreshed_at=t)
    assert (a.dated, a.latest) == (5000, True)


@pytest.mark.parametrize("limit", [40, 100, 300])
def test_small_budgets_still_write_dated_keys_every_day(limit):
    used, waiting, dated, refreshes, due = simulate_day(limit, backlog=0)
    assert used <= limit and dated >= limit // 2 - 9


def test_dated_keys_due_counts_hours_days_and_the_day_leaving_the_window():
    day_start = datetime(2025, 5, 2, 7, 0, tzinfo=UTC)  # 00:00 PDT
    second = timedelta(seconds=1)
    # One local day: 24 hours x 3 sensors, then at midnight the daily and cumulative keys and the 78 keys of
    # the day that leaves the window (re-pointed into its folder).
    assert dated_keys_due(day_start, day_start + timedelta(days=1) + second, LA, 3, 2) == 72 + 6 + 78
    assert dated_keys_due(day_start, day_start + timedelta(hours=1), LA, 3, 2) == 0  # due at the end: not before
    assert dated_keys_due(day_start, day_start + timedelta(hours=1) + second, LA, 3, 2) == 3
    # The fall-back day has 25 hours; with no look-back it leaves the window as it ends (here: 2025-11-02).
    fall_back = datetime(2025, 11, 2, 7, 0, tzinfo=UTC)
    assert dated_keys_due(fall_back, fall_back + timedelta(hours=25) + second, LA, 1, 0) == 25 + 2 + 27
