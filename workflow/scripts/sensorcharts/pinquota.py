"""How long Pinata's file quota lasts at the pace a cron adds folders, and which ``keep_days`` stays within it.

Pinata counts the files and folders an account pins; its free plan holds 500, mails a warning at 80 % and
takes no uploads past 125 % (docs/ipfs-and-providers.md). What a deployment with a cron pins at its fullest (the
end of a local day, or the run just after it):

* the **cron window** chart by chart: 26 charts a sensor and local day (24 hours, a daily and a cumulative
  chart) for today and the look-back days that are still published, one more while a day with 25 hours
  (the clocks go back) is among them;
* per sensor, 3 charts of each of: the new day's first (after local midnight the day that left the window
  stays pinned until its folder is indexed and its grace period ends), the earlier versions the ``latest``
  pointers may still name between two refreshes, and a run's new versions, uploaded before its index job
  deletes what their grace period has ended;
* superseded versions waiting out their grace period: 3 a sensor for each run in that period that uploaded
  charts: the most this deployment's runs made in any grace period of the last day, and at least as many as
  a cron exactly every 5 minutes makes (two with the default 10 minutes; a real one's jobs start seconds off
  their marks and usually hold three);
* one **folder per finished day** that left the window, one more every day, for good unless ``keep_days``
  retires the oldest: it then keeps ``keep_days - lookback`` of them, and one more after each local midnight
  (the new folder is pinned before the oldest, whose dated KV keys are deleted first, within
  ``kv_deletes_per_day``).

Folders are the only part that grows, so the count a cron reaches is known ahead: :class:`PinQuota` says in
how many days it meets the limit and the largest ``keep_days`` that never does. The whole-day benchmark
(``bench/publishing.py --day``) measured at most 280 pins for 3 sensors and 1,117 for 12, at any moment of a
run, where this estimates 283 and 1,129 (a fall-back day's charts included). A deployment that only
backfills (no chart pinned alone) is not a cron: only what it holds counts. Pure arithmetic on the ledger's
counts, like kvbudget.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CHARTS_PER_SENSOR_DAY = 26  # 24 hourly charts, a daily and a cumulative one
FALL_BACK_CHARTS = 1  # a 25-hour day's extra hourly chart, a sensor (at most one such day in a window)
VERSIONS_PER_SENSOR_RUN = 3  # what a run makes of a sensor: the current hour's, the daily and the cumulative
CRON_MINUTES = 5  # the cron docs/operating.md sets up: the fewest runs in a grace period the estimate assumes
WARN_DAYS = 30  # the note starts this many days before the limit is met
RUNS_REMEMBERED_S = 86_400  # how far back the times of runs that uploaded charts are kept


def runs_of_the_last_day(times: list[float], now: float) -> list[float]:
    """Of the times of runs that uploaded charts (sorted), those of the day before ``now``, ``now`` included; a
    clock set back (``--config now``) drops the runs after it."""
    return [t for t in times if now - RUNS_REMEMBERED_S < t <= now]


def most_runs_within(times: list[float], span_s: float) -> int:
    """The most of ``times`` (sorted) that fall in any half-open span ``(t - span_s, t]``: for runs every ``c``
    seconds, ceil(span_s / c), the runs whose superseded versions wait out a grace period of ``span_s``."""
    most, first = 0, 0
    for last, t in enumerate(times):
        while first <= last and times[first] <= t - span_s:
            first += 1
        most = max(most, last - first + 1)
    return most


@dataclass(frozen=True)
class PinQuota:
    limit: int  # publish.pinata_files
    sensors: int
    lookback: int
    keep_days: int | None
    grace_minutes: float
    pinned: int  # files and folders this deployment holds now
    folders: int  # of them, folders of finished days
    runs_in_grace: int = 0  # the most runs that uploaded charts in a grace period of the last day (measured)

    @property
    def cron(self) -> bool:
        """Whether charts are pinned one by one (a cron window), not only finished days' folders."""
        return self.pinned > self.folders

    def window_of(self, lookback: int) -> int:
        """Pins of a cron window of ``lookback`` look-back days at its fullest: its charts, the new day's first,
        the pointers' earlier targets, a run's new versions, and the superseded versions in their grace period."""
        runs = max(1, math.ceil(self.grace_minutes / CRON_MINUTES), self.runs_in_grace)
        charts = CHARTS_PER_SENSOR_DAY * (lookback + 1) + FALL_BACK_CHARTS
        return self.sensors * (charts + (3 + runs) * VERSIONS_PER_SENSOR_RUN)

    @property
    def window(self) -> int:
        """This deployment's window (days older than ``keep_days`` are not published at all); 0 without a cron."""
        if not self.cron:
            return 0
        return self.window_of(self.lookback if self.keep_days is None else min(self.lookback, self.keep_days))

    @property
    def keeps_folders(self) -> bool:
        """Whether days that leave the window are published as folders (not with ``keep_days <= lookback``)."""
        return self.keep_days is None or self.keep_days > self.lookback

    @property
    def peak(self) -> int:
        """What the folders pinned now come to at the fullest hour of a day (what is pinned, without a cron)."""
        if not self.cron:
            return self.pinned
        return max(self.pinned, self.folders + self.keeps_folders + self.window)

    @property
    def keep_days_that_fit(self) -> int | None:
        """The largest ``keep_days`` whose folders, the day's new one and a full window stay within the limit;
        ``lookback`` when only the window fits (no folder is ever made); None when not even that does."""
        room = self.limit - self.window_of(self.lookback)
        if room >= 2:
            return self.lookback + room - 1
        return self.lookback if room >= 0 and self.lookback >= 1 else None

    @property
    def retention_holds(self) -> bool:
        """Whether ``keep_days`` is set and keeps the pins within the limit for good."""
        if self.keep_days is None:
            return False
        if not self.keeps_folders:
            return self.window <= self.limit
        fit = self.keep_days_that_fit
        return fit is not None and self.keep_days <= fit

    @property
    def full_in_days(self) -> int | None:
        """Days until the peak meets the limit at one folder a day (0: it does already; None: never)."""
        if self.pinned >= self.limit:
            return 0
        if not self.cron or self.retention_holds:
            return None
        return max(0, self.limit - self.peak)

    def figures(self) -> dict:
        return {"pinned": self.pinned, "folders": self.folders, "pinata_files": self.limit, "cron_window": self.window,
                "runs_in_grace": self.runs_in_grace, "peak": self.peak, "full_in_days": self.full_in_days,
                "keep_days_that_fit": self.keep_days_that_fit}

    def note(self) -> str:
        """One sentence for the run's output, or "" while the limit is more than :data:`WARN_DAYS` away."""
        setting = f"publish.pinata_files {self.limit}"
        paid = "raise publish.pinata_files with a paid Pinata plan"
        holds = f"Pinata holds {self.pinned} files and folders of this deployment"
        if not self.cron:
            return (f"{holds}, at or over {setting}; retire old days (publish.keep_days) or {paid}"
                    if self.full_in_days == 0 else "")
        window = f"about {self.window} for today and the look-back day(s), chart by chart"
        fit = self.keep_days_that_fit
        if fit is None and not self.retention_holds:
            return (f"{setting} is too small for a cron of {self.sensors} sensor(s): {window}; raise it (a paid "
                    "Pinata plan), chart fewer sensors or lower lookback_days")
        days = self.full_in_days
        if days is None or days > WARN_DAYS:
            return ""
        counts = f"{self.folders} folder(s) of finished days and {window}"
        if self.retention_holds:  # over now, and coming down
            return (f"{holds}, at or over {setting}: the folders of days older than publish.keep_days "
                    f"{self.keep_days} are deleted once their dated KV keys are (publish.kv_deletes_per_day), "
                    "over the next runs")
        fix = f"set publish.keep_days to at most {fit} (older days are retired from Pinata and KV), or {paid}"
        if days == 0:
            return (f"{holds}, about {self.peak} at the fullest hour of a day ({counts}): at or over {setting}, "
                    f"and Pinata's free plan takes no uploads past 125 % of its quota; {fix}")
        return (f"Pinata will hold as many files as {setting} allows in about {days} day(s), a folder more every "
                f"day ({counts}); {fix}")
