"""Pinata's file quota over months of cron: when a deployment meets ``publish.pinata_files``, and which
``keep_days`` keeps it within. The whole workflow against a Pinata double that enforces the limit is in
test_publish_lasting.py; here, the arithmetic over a year of days."""

from __future__ import annotations

import pytest

from sensorcharts.pinquota import WARN_DAYS, PinQuota


def steady(folders: int, sensors: int = 3, lookback: int = 2, keep_days: int | None = None,
           limit: int = 500) -> PinQuota:
    """A 5-minute cron at the end of a day: the whole window pinned, two runs' superseded versions in grace."""
    window = sensors * 26 * (lookback + 1)
    return PinQuota(limit, sensors, lookback, keep_days, 10, pinned=folders + window + 6 * sensors, folders=folders)


def test_the_default_deployment_is_warned_a_month_ahead_and_told_the_keep_days_that_fit():
    """3 sensors, two look-back days, no retention, the free plan's 500 files: a folder a day meets the limit
    after about 230 days; the run says nothing until 30 days before, then counts down by one a day."""
    quiet = [f for f in range(400) if not steady(f).note()]
    first_warned = len(quiet)
    assert quiet == list(range(first_warned))
    assert first_warned == 229 - WARN_DAYS  # 229 folders (keep_days 231), a full window and two runs' versions: 500
    for folders in range(first_warned, first_warned + WARN_DAYS + 1):
        quota = steady(folders)
        assert quota.full_in_days == WARN_DAYS - (folders - first_warned)
        assert "set publish.keep_days to at most 231 " in quota.note()
    assert steady(first_warned + WARN_DAYS).note().startswith("Pinata holds ")
    assert "at or over publish.pinata_files 500" in steady(first_warned + 100).note()


def test_the_keep_days_it_names_holds_for_good_and_one_more_does_not():
    """A year of days with ``keep_days`` as the note says: the folders kept (and the new one, pinned before the
    oldest is deleted) with a full window never pass the limit; a day more of retention does."""
    fit = steady(300).keep_days_that_fit
    for keep, fits in ((fit, True), (fit + 1, False)):
        kept = keep - 2  # the window holds today and the two look-back days
        peaks = [steady(min(day, kept), keep_days=keep).peak for day in range(365)]
        assert (max(peaks) <= 500) is fits
        assert (steady(kept, keep_days=keep).note() == "") is fits


def test_a_network_whose_window_alone_is_over_the_limit_is_told_so():
    quota = steady(0, sensors=12)
    assert quota.keep_days_that_fit is None
    assert quota.note().startswith("publish.pinata_files 500 is too small for a cron of 12 sensor(s): about 1080 ")
    assert "chart fewer sensors or lower lookback_days" in quota.note()
    assert steady(0, sensors=5).note() == ""  # the most the free plan holds


@pytest.mark.parametrize(("grace_minutes", "runs"), [(0, 1), (10, 2), (12, 3), (30, 6)])
def test_superseded_versions_are_those_of_the_runs_in_a_grace_period(grace_minutes, runs):
    """A run supersedes 3 versions a sensor; they wait out ``grace_minutes``, and a pin found unreferenced is
    deleted by a later run at the earliest, so a 5-minute cron holds at least one run's."""
    quota = PinQuota(500, 3, 2, None, grace_minutes, pinned=250, folders=20)
    assert quota.superseded == 3 * 3 * runs
    assert quota.peak == 20 + 1 + 3 * (78 + 6) + 9 * runs


def test_the_whole_day_benchmark_peaks_are_what_it_estimates():
    """``bench/publishing.py --day`` measured 271 pins at most for 3 sensors and 1,081 for 12 (docs/publishing.md),
    with no finished day's folder yet: the estimate, folder of the day leaving the window included."""
    assert PinQuota(100_000, 3, 2, None, 10, pinned=0, folders=0).peak == 271
    assert PinQuota(100_000, 12, 2, None, 10, pinned=0, folders=0).peak == 1081
