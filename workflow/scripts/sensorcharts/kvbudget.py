"""How many Cloudflare KV writes a run may spend, so that a whole UTC day stays within a daily budget.

Cloudflare's free plan allows 1,000 KV writes a day (each pair of a bulk write counts), reset at 00:00 UTC;
past that, writes fail with error 10048 until midnight. A cron run every 5 minutes that rewrote every
changed key would need about 5,000. So each run asks :func:`allowance` what it may write:

* **dated keys** of finished periods (an hour, a day that has ended) come first, and are never dropped: what
  does not fit today waits for a later run. But a run leaves room for the dated keys that will fall due
  later the same UTC day (:func:`dated_keys_due`) and for the ``latest`` pointers' reserve, so a backfill's
  thousands of keys spread over the following days without starving today's hours;
* the **latest pointers** spend what is left, evenly over the rest of the UTC day: all of them are
  refreshed together once per interval (time left ÷ refreshes the rest of the budget allows), at most once
  a run. Their reserve (:func:`latest_reserve`: one refresh an hour of every pointer, at most half the
  budget) means that, up to 6 sensors, they are never more than about an hour old, even while a backfill's
  keys wait.

Many sensors need more: each needs 52 dated keys a day with two look-back days (24 hours, a daily and a
cumulative key, and the same 26 again when its day leaves the window and is re-pointed into its folder).
The reserve then shrinks to what the day's dated keys leave, so they keep up while they fit in three
quarters of the budget (up to 14 sensors on the free plan, the pointers refreshed less often than hourly).
Past that the pointers keep a quarter, because the website reads them first; the dated keys fall further
behind every day, and :class:`Capacity` says so in the run's record.

Pure functions of the numbers handed in, so the policy is tested without a network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from .timegrid import day_bounds, hour_slots

DAY_S = 86_400.0


def next_utc_midnight(now: datetime) -> datetime:
    day = now.astimezone(timezone.utc).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Allowance:
    dated: int  # dated keys this run may write
    latest: bool  # whether this run refreshes the latest pointers
    next_latest_at: datetime | None  # when the latest pointers may be refreshed next (None: whenever changed)
    reason: str  # why dated keys or latest refreshes wait, for the run's record ("" when nothing waits)


def latest_reserve(limit: int, latest_keys: int, dated_per_day: int) -> int:
    """Writes of a whole UTC day kept for the latest pointers: one refresh an hour of each, but at most half
    the budget, and at most what the day's own dated keys leave of it less one refresh (the pointers spend
    in whole refreshes, so an exact fit would leave a few dated keys behind every day). That last cap never
    goes below a quarter of the budget, nor below one refresh."""
    return min(latest_keys * 24, limit // 2, max(limit - dated_per_day - latest_keys, limit // 4, latest_keys))


def allowance(*, limit: int | None, used: int, exhausted: bool, now: datetime, dated_waiting: int,
              dated_due_later: int, dated_per_day: int, latest_keys: int, latest_changed: int,
              latest_refreshed_at: datetime | None) -> Allowance:
    """What this run may write. ``limit`` is the daily budget (None: unlimited), ``used`` the writes spent
    this UTC day, ``exhausted`` whether Cloudflare already answered 10048 today; ``dated_waiting`` the dated
    keys ready now, ``dated_due_later`` those that fall due before 00:00 UTC, ``dated_per_day`` those of a
    whole UTC day (:func:`dated_keys_per_day`); ``latest_keys`` the number of latest pointers,
    ``latest_changed`` how many of them have a newer chart to point to."""
    midnight = next_utc_midnight(now)
    if exhausted:
        return Allowance(0, False, midnight, "Cloudflare's daily write limit is used up until 00:00 UTC")
    if limit is None:
        return Allowance(dated_waiting, latest_changed > 0, None, "")
    left = max(0, limit - used)
    day_left = (midnight - now).total_seconds()
    reserve = math.ceil(latest_reserve(limit, latest_keys, dated_per_day) * day_left / DAY_S)
    dated = min(dated_waiting, max(0, left - reserve - dated_due_later))
    reasons = []
    if dated < dated_waiting:
        reasons.append(f"{dated_waiting - dated} dated key(s) wait for budget (kv_writes_per_day {limit}, "
                       f"{used} used today)")
    # The reserve holds even when the dated keys due later would take everything left (too many sensors).
    spare = min(left - dated, max(reserve, left - dated - dated_due_later))
    rounds = spare // latest_keys if latest_keys else 0
    if latest_changed == 0:
        return Allowance(dated, False, None, "; ".join(reasons))
    if rounds < 1 or spare < latest_changed:
        reasons.append("the latest pointers wait for 00:00 UTC: today's budget is spent")
        return Allowance(dated, False, midnight, "; ".join(reasons))
    interval = timedelta(seconds=day_left / rounds)
    due = latest_refreshed_at is None or now - latest_refreshed_at >= interval
    next_at = None if due else latest_refreshed_at + interval
    if not due:
        reasons.append(f"the latest pointers are refreshed every {interval.total_seconds() / 60:.0f} min "
                       f"to last the day; next at {next_at.isoformat(timespec='seconds')}")
    return Allowance(dated, due, next_at, "; ".join(reasons))


def dated_keys_due(start: datetime, end: datetime, tz: ZoneInfo, sensors: int, lookback: int) -> int:
    """Dated keys that fall due strictly between ``start`` and ``end`` for a cron window of ``lookback``
    days: an hourly key per sensor as each hour ends, a daily and a cumulative key per sensor as each local
    day ends, and the keys of the day that leaves the window then (rewritten to point into its folder). A
    period ending at ``end`` itself (00:00 UTC) is written after it, on the next day's budget."""
    count = 0
    day: date = start.astimezone(tz).date()
    while day_bounds(day, tz)[0] < end:
        count += sensors * sum(start < slot.end < end for slot in hour_slots(day, tz))
        if start < day_bounds(day, tz)[1] < end:
            leaving = day - timedelta(days=lookback)
            count += sensors * 2 + sensors * (len(hour_slots(leaving, tz)) + 2)
        day += timedelta(days=1)
    return count


def dated_keys_per_day(now: datetime, tz: ZoneInfo, sensors: int, lookback: int) -> int:
    """Dated keys that fall due in the UTC day of ``now`` (those of 00:00 UTC itself included)."""
    midnight = next_utc_midnight(now)
    return dated_keys_due(midnight - timedelta(days=1, microseconds=1), midnight, tz, sensors, lookback)


@dataclass(frozen=True)
class Capacity:
    sensors: int
    limit: int  # the daily budget
    dated_per_day: int  # dated keys a cron of the window makes in a UTC day
    latest_per_day: int  # writes a day the latest pointers spend of their reserve (in whole refreshes)
    catch_up_per_day: int  # writes a day left for keys that wait (a backfill's); negative: the cron falls behind

    def note(self, waiting: int, overdue: int) -> str:
        """One sentence for the run's record, or "": ``waiting`` dated keys wait for budget, ``overdue`` of them
        for a period that ended more than a day ago (a few wait for hours in steady operation)."""
        setting = f"publish.kv_writes_per_day {self.limit}"
        waits = f"{waiting} dated KV key(s) wait for the daily budget ({setting})"
        fix = "raise the budget (Cloudflare's Workers Paid plan) or chart fewer sensors"
        if self.catch_up_per_day <= 0:
            left = (f"so about {-self.catch_up_per_day} dated keys a day fall further behind"
                    if self.catch_up_per_day < 0 else "so nothing is left for keys that wait")
            return (f"{waits + ', and the budget' if waiting else setting} is too small for a cron of "
                    f"{self.sensors} sensor(s): they make about {self.dated_per_day} dated keys a day and their "
                    f"latest pointers spend {self.latest_per_day} writes, {left}; {fix}")
        if not overdue:
            return ""
        days = math.ceil(waiting / self.catch_up_per_day)
        sooner = f"; {fix} to write them sooner" if days > 7 else ""
        return f"{waits}; later runs write them, about {days} more day(s) at this budget{sooner}"


def capacity(limit: int, now: datetime, tz: ZoneInfo, sensors: int, lookback: int) -> Capacity:
    """What a budget of ``limit`` writes a day leaves, in the UTC day of ``now``, for keys that wait."""
    dated = dated_keys_per_day(now, tz, sensors, lookback)
    latest_keys = sensors * 3
    latest = latest_keys * (latest_reserve(limit, latest_keys, dated) // latest_keys) if latest_keys else 0
    return Capacity(sensors, limit, dated, latest, limit - dated - latest)
