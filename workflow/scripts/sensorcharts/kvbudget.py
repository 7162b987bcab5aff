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
  a run. The reserve (one refresh an hour of every pointer, at most half the budget) means they are never
  more than about an hour old, even while a backfill's keys wait.

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


def allowance(*, limit: int | None, used: int, exhausted: bool, now: datetime, dated_waiting: int,
              dated_due_later: int, latest_keys: int, latest_changed: int,
              latest_refreshed_at: datetime | None) -> Allowance:
    """What this run may write. ``limit`` is the daily budget (None: unlimited), ``used`` the writes spent
    this UTC day, ``exhausted`` whether Cloudflare already answered 10048 today; ``dated_waiting`` the dated
    keys ready now, ``dated_due_later`` those that fall due before 00:00 UTC; ``latest_keys`` the number of
    latest pointers, ``latest_changed`` how many of them have a newer chart to point to."""
    midnight = next_utc_midnight(now)
    if exhausted:
        return Allowance(0, False, midnight, "Cloudflare's daily write limit is used up until 00:00 UTC")
    if limit is None:
        return Allowance(dated_waiting, latest_changed > 0, None, "")
    left = max(0, limit - used)
    day_left = (midnight - now).total_seconds()
    reserve = math.ceil(min(latest_keys * 24, limit // 2) * day_left / DAY_S)
    dated = min(dated_waiting, max(0, left - reserve - dated_due_later))
    reasons = []
    if dated < dated_waiting:
        reasons.append(f"{dated_waiting - dated} dated key(s) wait for budget (kv_writes_per_day {limit}, "
                       f"{used} used today)")
    spare = left - dated - dated_due_later
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
