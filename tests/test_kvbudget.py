"""The KV write budget's policy, simulated over whole UTC days without a network."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sensorcharts.kvbudget import allowance, capacity, dated_keys_due, dated_keys_per_day, next_utc_midnight
from sensorcharts.timegrid import zone

LA = zone("America/Los_Angeles")
UTC = timezone.utc


def simulate_days(limit: int, backlog: int, sensors: int = 3, days: int = 1, step_min: int = 5,
                  day=datetime(2025, 5, 2, tzinfo=UTC)):
    """Cron runs every ``step_min`` minutes over whole UTC days of ``sensors`` sensors in Los Angeles, each
    latest pointer changing every run; ``backlog`` dated keys of a month ago wait at the first midnight (a
    backfill). Keys are written newest first (by when they fell due; the ledger orders by period end, which
    differs only for the keys of a day leaving the window). Returns, for each day: writes spent, keys
    waiting at its end, dated keys written, the times the latest pointers were refreshed, the dated keys
    that fell due, and the longest any key waited that day (written or still waiting at its end)."""
    refreshed, out = None, []
    waiting = [day - timedelta(days=30)] * backlog  # when each waiting key fell due, oldest first
    t = day
    for _ in range(days):
        used, written_dated, refreshes, due, longest = 0, 0, [], 0, timedelta(0)
        midnight = t + timedelta(days=1)
        while t < midnight:
            # keys that fell due since the last run (periods ending at this very instant included)
            new = dated_keys_due(t - timedelta(minutes=step_min), t + timedelta(microseconds=1), LA, sensors,
                                 2) if t > day else 0
            waiting += [t] * new
            due += new
            a = allowance(limit=limit, used=used, exhausted=False, now=t, dated_waiting=len(waiting),
                          dated_due_later=dated_keys_due(t, next_utc_midnight(t), LA, sensors, 2),
                          dated_per_day=dated_keys_per_day(t, LA, sensors, 2), latest_keys=sensors * 3,
                          latest_changed=sensors * 3, latest_refreshed_at=refreshed)
            used += a.dated
            longest = max([longest, *(t - due_at for due_at in waiting[len(waiting) - a.dated:])])
            del waiting[len(waiting) - a.dated:]
            written_dated += a.dated
            if a.latest:
                used += sensors * 3
                refreshed = t
                refreshes.append(t)
            t += timedelta(minutes=step_min)
        oldest = t - waiting[0] if waiting else timedelta(0)
        out.append((used, len(waiting), written_dated, refreshes, due, max(longest, oldest)))
    return out


def simulate_day(limit: int, backlog: int):
    return simulate_days(limit, backlog)[0][:5]


def longest_gap(refreshes):
    return max(b - a for a, b in zip(refreshes, refreshes[1:]))


def test_a_steady_cron_day_stays_within_the_free_plan_and_keeps_every_dated_key():
    used, waiting, dated, refreshes, due = simulate_day(1000, backlog=0)
    assert used <= 1000
    assert due >= 3 * 23 + 3 * 2 + 3 * 26  # hours, daily+cumulative, the day leaving the window
    assert waiting == 0 and dated == due  # each got its dated key the same day
    # The latest pointers spend the rest, spread over the day: ~90 refreshes, never an hour apart.
    assert len(refreshes) >= 80
    assert longest_gap(refreshes) <= timedelta(minutes=30)


def test_a_backfill_waits_for_later_days_without_starving_latest():
    used, waiting, dated, refreshes, due = simulate_day(1000, backlog=2340)
    assert used <= 1000
    assert 600 <= dated < 2340 and waiting == 2340 + due - dated  # the rest waits, none lost
    assert len(refreshes) >= 20 and longest_gap(refreshes) <= timedelta(minutes=70)  # about hourly, all day


def test_a_day_already_spent_writes_nothing_until_midnight():
    t = datetime(2025, 5, 2, 15, 0, tzinfo=UTC)
    a = allowance(limit=1000, used=1000, exhausted=False, now=t, dated_waiting=50, dated_due_later=10,
                  dated_per_day=156, latest_keys=9, latest_changed=9, latest_refreshed_at=t - timedelta(hours=3))
    assert (a.dated, a.latest, a.next_latest_at) == (0, False, next_utc_midnight(t))
    assert "50 dated key(s) wait" in a.reason


def test_cloudflare_saying_10048_stops_writes_for_the_day_whatever_the_count():
    t = datetime(2025, 5, 2, 15, 0, tzinfo=UTC)
    a = allowance(limit=1000, used=10, exhausted=True, now=t, dated_waiting=5, dated_due_later=0,
                  dated_per_day=156, latest_keys=9, latest_changed=9, latest_refreshed_at=None)
    assert (a.dated, a.latest) == (0, False) and "00:00 UTC" in a.reason


def test_no_budget_writes_everything_every_run():
    t = datetime(2025, 5, 2, 15, 0, tzinfo=UTC)
    a = allowance(limit=None, used=10**6, exhausted=False, now=t, dated_waiting=5000, dated_due_later=100,
                  dated_per_day=156, latest_keys=9, latest_changed=3, latest_refreshed_at=t)
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


@pytest.mark.parametrize("sensors", [10, 12, 14])
def test_many_sensors_keep_every_dated_key_up_to_date_and_the_pointers_share_the_rest(sensors):
    # 52 dated keys a sensor a day; with one hourly refresh of each pointer on top they would not fit in 1,000.
    per_day = dated_keys_per_day(datetime(2025, 5, 3, tzinfo=UTC), LA, sensors, 2)
    assert per_day == 52 * sensors and per_day + min(3 * sensors * 24, 500) > 1000
    days = simulate_days(1000, backlog=0, sensors=sensors, days=8)
    for used, waiting, dated, refreshes, due, longest in days[1:]:  # the first day starts with an empty window
        assert used <= 1000
        assert longest <= timedelta(hours=3)  # a key waits for hours at most: nothing piles up, day after day
        assert len(refreshes) >= (1000 - per_day) // (3 * sensors) - 2  # the pointers get what is left
        assert longest_gap(refreshes) <= timedelta(hours=5)
    assert sum(d[2] for d in days) == sum(d[4] for d in days) - days[-1][1]  # every key written or waiting


def test_too_many_sensors_for_the_budget_still_refresh_the_pointers_and_say_so():
    days = simulate_days(1000, backlog=0, sensors=20, days=3)
    for used, waiting, dated, refreshes, due, longest in days:
        assert used <= 1000
        assert len(refreshes) >= 3 and longest_gap(refreshes) <= timedelta(hours=8)  # a quarter of the budget
    assert days[2][1] > days[1][1] > days[0][1] > 0  # the dated keys fall further behind every day
    room = capacity(1000, datetime(2025, 5, 3, tzinfo=UTC), LA, 20, 2)
    assert (room.dated_per_day, room.latest_per_day, room.catch_up_per_day) == (1040, 240, -280)
    behind = (days[2][1] - days[0][1]) / 2
    assert abs(behind - 280) <= 10  # the shortfall the record states is the one that happens
    assert room.note(waiting=0, overdue=0).startswith(
        "publish.kv_writes_per_day 1000 is too small for a cron of 20 sensor(s): they make about 1040 dated keys")
    note = room.note(waiting=days[2][1], overdue=0)
    assert note.startswith(f"{days[2][1]} dated KV key(s) wait for the daily budget (publish.kv_writes_per_day 1000)"
                           ", and the budget is too small")
    assert "about 280 dated keys a day fall further behind" in note and "Workers Paid" in note


def test_the_note_on_waiting_keys_counts_the_days_the_budget_needs_to_catch_up():
    monday = datetime(2025, 5, 5, 12, tzinfo=UTC)
    three = capacity(1000, monday, LA, 3, 2)  # 156 dated keys and 216 pointer writes a day leave 628
    assert three.catch_up_per_day == 628
    assert three.note(waiting=0, overdue=0) == ""
    assert three.note(waiting=12, overdue=0) == ""  # keys of the last hours, written later today: no news
    assert three.note(waiting=2340, overdue=2340).endswith("later runs write them, about 4 more day(s) at this budget")
    # 12 sensors: the pointers spend 9 refreshes of 36 of their 340-write reserve; 52 writes a day are left.
    twelve = capacity(1000, monday, LA, 12, 2)
    assert (twelve.dated_per_day, twelve.latest_per_day, twelve.catch_up_per_day) == (624, 324, 52)
    assert twelve.note(waiting=900, overdue=880).endswith(
        "about 18 more day(s) at this budget; raise the budget (Cloudflare's Workers Paid plan) or chart fewer "
        "sensors to write them sooner")
    # A budget whose dated keys and pointers take it all: no estimate of days, the budget is too small.
    assert "so nothing is left for keys that wait" in capacity(201, monday, LA, 3, 2).note(waiting=100, overdue=100)


@pytest.mark.parametrize("sensors, backlog", [(3, 2340), (12, 900), (14, 200)])
def test_a_backfill_waits_as_long_as_the_note_says(sensors, backlog):
    days = simulate_days(1000, backlog=backlog, sensors=sensors, days=25)
    caught_up = next(i for i, d in enumerate(days, 1) if d[1] <= 2 * sensors)  # only the last hour's keys wait
    note = capacity(1000, datetime(2025, 5, 3, tzinfo=UTC), LA, sensors, 2).note(waiting=backlog, overdue=backlog)
    said = int(note.split("about ")[1].split(" more day")[0])
    assert said - 1 <= caught_up <= said  # the first day, at midnight, already writes some
