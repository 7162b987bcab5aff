"""How long Pinata's file quota lasts at the pace a cron adds folders, and which ``keep_days`` stays within it.

Pinata counts the files and folders an account pins; its free plan holds 500, mails a warning at 80 % and
takes no uploads past 125 % (docs/ipfs-and-providers.md). What a deployment with a cron pins at its fullest (the
end of a local day, or the run just after it):

* the **cron window** chart by chart: 26 charts a sensor and local day (24 hours, a daily and a cumulative
  chart) for today and the look-back days;
* per sensor, the 3 earlier versions the ``latest`` pointers may still name between two refreshes, and the
  3 new versions a run uploads before its index job deletes what their grace period has ended;
* superseded versions waiting out their grace period: 3 a sensor for each run of a cron every 5 minutes in
  that period (two runs with the default 10 minutes; a cron more often than that holds more);
* one **folder per finished day** that left the window, one more every day, for good unless ``keep_days``
  retires the oldest: it then keeps ``keep_days - lookback`` of them, and one more for the length of a
  grace period after each local midnight (the new folder is pinned before the oldest is deleted).

Folders are the only part that grows, so the count a cron reaches is known ahead: :class:`PinQuota` says in
how many days it meets the limit and the largest ``keep_days`` that never does. The whole-day benchmark
measured 271 pins at most for 3 sensors and 1,081 for 12 (``bench/publishing.py --day``), where this
estimates 271 and 1,081 plus the folders. Pure arithmetic on the ledger's counts, like kvbudget.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CHARTS_PER_SENSOR_DAY = 26  # 24 hourly charts, a daily and a cumulative one (25 or 27 on DST days)
VERSIONS_PER_SENSOR_RUN = 3  # a run's new versions of the current hour's, the daily and the cumulative chart
CRON_MINUTES = 5  # the cron the estimate assumes (docs/operating.md)
WARN_DAYS = 30  # the note starts this many days before the limit is met


@dataclass(frozen=True)
class PinQuota:
    limit: int  # publish.pinata_files
    sensors: int
    lookback: int
    keep_days: int | None
    grace_minutes: float
    pinned: int  # files and folders this deployment holds now
    folders: int  # of them, folders of finished days

    @property
    def window(self) -> int:
        """The cron window's charts, the pointers' earlier targets and a run's new versions, at their fullest."""
        return self.sensors * (CHARTS_PER_SENSOR_DAY * (self.lookback + 1) + 2 * VERSIONS_PER_SENSOR_RUN)

    @property
    def superseded(self) -> int:
        """Superseded versions waiting out their grace period at the end of a run (one run's at least: a pin
        found unreferenced is deleted by a later run)."""
        runs = max(1, math.ceil(self.grace_minutes / CRON_MINUTES))
        return runs * VERSIONS_PER_SENSOR_RUN * self.sensors

    @property
    def peak(self) -> int:
        """What the folders pinned now come to at the fullest hour of a day."""
        return max(self.pinned, self.folders + 1 + self.window + self.superseded)

    @property
    def keep_days_that_fit(self) -> int | None:
        """The largest ``keep_days`` whose folders and a full window stay within the limit (None: none does)."""
        keep = self.limit - 1 - self.window - self.superseded + self.lookback
        return keep if keep > self.lookback else None

    @property
    def full_in_days(self) -> int | None:
        """Days until the peak meets the limit at one folder a day (0: it does already; None: never)."""
        fit = self.keep_days_that_fit
        if self.keep_days is not None and fit is not None and self.keep_days <= fit:
            return None
        return max(0, self.limit - self.peak)

    def figures(self) -> dict:
        return {"pinned": self.pinned, "folders": self.folders,
                "pinata_files": self.limit, "cron_window": self.window + self.superseded, "peak": self.peak,
                "full_in_days": self.full_in_days, "keep_days_that_fit": self.keep_days_that_fit}

    def note(self) -> str:
        """One sentence for the run's output, or "" while the limit is more than :data:`WARN_DAYS` away."""
        setting = f"publish.pinata_files {self.limit}"
        window = (f"about {self.window + self.superseded} for today and the {self.lookback} look-back day(s), "
                  "chart by chart")
        fit = self.keep_days_that_fit
        if fit is None:
            return (f"{setting} is too small for a cron of {self.sensors} sensor(s): {window}; raise it (a paid "
                    "Pinata plan), chart fewer sensors or lower lookback_days")
        days = self.full_in_days
        if days is None or days > WARN_DAYS:
            return ""
        counts = f"{self.folders} folder(s) of finished days and {window}"
        fix = (f"set publish.keep_days to at most {fit} (older days are retired from Pinata and KV), or raise "
               "publish.pinata_files with a paid Pinata plan")
        if days == 0:
            return (f"Pinata holds {self.pinned} files and folders of this deployment, about {self.peak} at the "
                    f"fullest hour of a day ({counts}): at or over {setting}, and Pinata's free plan takes no "
                    f"uploads past 125 % of its quota; {fix}")
        return (f"Pinata will hold as many files as {setting} allows in about {days} day(s), a folder more every "
                f"day ({counts}); {fix}")
