"""Pinata's file quota over months of cron: when a deployment meets ``publish.pinata_files``, and which
``keep_days`` keeps it within. The whole workflow against a Pinata double that enforces the limit is in
test_publish_lasting.py; here, the arithmetic over a year of days."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from sensorcharts.pinquota import WARN_DAYS, PinQuota, most_runs_within, runs_of_the_last_day

# 3 sensors, two look-back days, 10 minutes' grace: 26 charts a sensor and day and a fall-back day's extra
# hour; 3 of each: the new day's first charts, the versions the pointers still name, a run's uploads before
# it deletes; and two 5-minute runs' superseded versions.
WINDOW = 3 * (26 * 3 + 1 + 3 + 3 + 3 + 6)


def steady(folders: int, sensors: int = 3, lookback: int = 2, keep_days: int | None = None,
           limit: int = 500) -> PinQuota:
    """A cron some time in a day: the window's charts pinned one by one, ``folders`` finished days."""
    return PinQuota(limit, sensors, lookback, keep_days, 10, pinned=folders + sensors * 26 * (lookback + 1),
                    folders=folders)


def test_the_default_deployment_is_warned_a_month_ahead_and_told_the_keep_days_that_fit():
    """3 sensors, two look-back days, no retention, the free plan's 500 files: a folder a day meets the limit
    after 217 finished days; the run says nothing until 30 days before, then counts down by one a day."""
    assert steady(0).window == WINDOW == 282
    quiet = [f for f in range(400) if not steady(f).note()]
    first_warned = len(quiet)
    assert quiet == list(range(first_warned))
    assert first_warned == 500 - 1 - WINDOW - WARN_DAYS  # 217 folders, the day's new one and the window: 500
    for folders in range(first_warned, first_warned + WARN_DAYS):
        quota = steady(folders)
        assert quota.full_in_days == WARN_DAYS - (folders - first_warned)
        assert quota.note().startswith("Pinata will hold as many files as publish.pinata_files 500 allows in about ")
        assert "set publish.keep_days to at most 219 " in quota.note()
    assert steady(first_warned + WARN_DAYS - 1).full_in_days == 1
    assert steady(first_warned + WARN_DAYS).note().startswith("Pinata holds ")
    assert "at or over publish.pinata_files 500" in steady(first_warned + 100).note()


def folders_pinned(today: date, deployed: date, keep_days: int | None, lookback: int) -> int:
    """Folders pinned just after ``today``'s local midnight, by the rules of indexing.py and common.smk: the
    day that left the window is a new folder; days before ``today - keep_days`` are retired, and the oldest
    of them is still pinned until its dated KV keys are deleted and its grace period ends."""
    last = today - timedelta(days=lookback + 1)
    first = deployed if keep_days is None else max(deployed, today - timedelta(days=keep_days + 1))
    return max(0, (last - first).days + 1)


@pytest.mark.parametrize("lookback", [0, 2])
def test_the_keep_days_it_names_holds_for_a_year_and_one_more_does_not(lookback):
    """Three years of days with ``keep_days`` as the note says, the folders counted by the retention rule: a
    full window and the folders never pass the limit; a day more of retention does."""
    fit = steady(300, lookback=lookback).keep_days_that_fit
    deployed = date(2025, 1, 1)
    for keep, fits in ((fit, True), (fit + 1, False)):
        worst = max(folders_pinned(deployed + timedelta(days=d), deployed, keep, lookback) for d in range(3 * 365))
        assert (worst + steady(0, lookback=lookback).window <= 500) is fits
        assert (steady(worst - 1, lookback=lookback, keep_days=keep).note() == "") is fits


def test_a_network_whose_window_alone_is_over_the_limit_is_told_so():
    quota = steady(0, sensors=12)
    assert quota.keep_days_that_fit is None
    assert quota.note().startswith("publish.pinata_files 500 is too small for a cron of 12 sensor(s): about 1128 ")
    assert "chart fewer sensors or lower lookback_days" in quota.note()
    assert steady(0, sensors=5).keep_days_that_fit == 31  # the most the free plan holds, for a month of days
    assert steady(0, sensors=6).keep_days_that_fit is None


def test_a_limit_that_holds_the_window_but_no_folder_names_keep_days_equal_to_lookback():
    """With ``keep_days == lookback`` no day leaves the window as a folder: the window alone must fit."""
    assert steady(0, limit=WINDOW).keep_days_that_fit == 2
    assert steady(0, limit=WINDOW - 1).keep_days_that_fit is None
    assert steady(0, limit=WINDOW + 1).keep_days_that_fit == 2  # a folder would need one more for the new one
    assert steady(0, limit=WINDOW + 2).keep_days_that_fit == 3
    assert steady(0, lookback=0, limit=3 * 42 + 1).keep_days_that_fit is None  # keep_days is at least 1


def test_keep_days_shorter_than_the_look_back_shrinks_the_window():
    """Days older than ``keep_days`` are not published, look-back days included."""
    assert steady(0, sensors=6, keep_days=1).window == 6 * (26 * 2 + 1 + 15)
    assert steady(0, sensors=6, keep_days=1).note() == ""
    assert steady(0, sensors=6, keep_days=1).full_in_days is None
    assert "too small for a cron of 8 sensor(s)" in steady(0, sensors=8, keep_days=1).note()
    assert "too small" in steady(0, sensors=6).note()


@pytest.mark.parametrize(("grace_minutes", "runs"), [(0, 1), (10, 2), (12, 3), (30, 6)])
def test_superseded_versions_are_those_of_the_runs_in_a_grace_period(grace_minutes, runs):
    """A run supersedes 3 versions a sensor; they wait out ``grace_minutes``, and a pin found unreferenced is
    deleted by a later run at the earliest, so a 5-minute cron holds at least one run's."""
    quota = PinQuota(500, 3, 2, None, grace_minutes, pinned=250, folders=20)
    assert quota.window == 3 * (79 + 9 + 3 * runs)
    assert quota.peak == 20 + 1 + quota.window


@pytest.mark.parametrize(("every_s", "runs"), [(60, 10), (120, 5), (180, 4), (240, 3), (300, 2), (900, 1)])
def test_the_runs_in_a_grace_period_are_counted_from_the_runs_times(every_s, runs):
    """A day of runs every ``every_s`` seconds: a grace period of 10 minutes holds the versions of
    ceil(600 / every_s) of them at most; runs a few seconds late now and then, of one more at most."""
    times = [t * every_s for t in range(86_400 // every_s)]
    assert most_runs_within(times, 600) == runs
    assert most_runs_within([t + (7 * t) % 11 for t in times], 600) in (runs, runs + 1)
    assert most_runs_within(times[:1], 600) == 1 and most_runs_within([], 600) == 0
    assert most_runs_within(times, 0) == 0


def test_only_the_last_days_runs_count():
    """A deployment whose cron stopped uploading charts (its sensors fell silent) is charged no runs a day
    later; a clock set back forgets the runs after it."""
    day = 86_400
    times = [0, 600, day - 1, day + 60]
    assert runs_of_the_last_day(times, day + 60) == [600, day - 1, day + 60]
    assert runs_of_the_last_day(times, 3 * day) == []
    assert runs_of_the_last_day(times, day) == [600, day - 1]


def test_a_cron_more_often_than_every_5_minutes_is_charged_its_own_runs():
    """A cron every minute holds ten runs' superseded versions, 24 more pins a sensor than the 5-minute cron the
    estimate otherwise assumes; a slower cron is still charged two runs."""
    every_minute = PinQuota(500, 3, 2, None, 10, pinned=250, folders=20, runs_in_grace=10)
    assert every_minute.window == 3 * (79 + 9 + 3 * 10) == WINDOW + 3 * 3 * 8
    assert every_minute.keep_days_that_fit == 219 - 72
    assert PinQuota(500, 3, 2, None, 10, pinned=250, folders=20, runs_in_grace=1).window == WINDOW


def test_what_is_pinned_counts_when_it_is_more_than_the_estimate():
    quota = PinQuota(500, 3, 2, None, 10, pinned=520, folders=150)
    assert quota.peak == 520 and quota.full_in_days == 0
    assert quota.note().startswith("Pinata holds 520 files and folders of this deployment, about 520 ")


def test_retention_already_set_says_the_surplus_goes_rather_than_naming_keep_days_again():
    """Set after months without it, ``keep_days`` retires many days at once; their folders go once their dated
    KV keys are deleted, within the daily delete budget, so for a few runs the pins stay over the limit."""
    quota = PinQuota(500, 3, 2, 200, 10, pinned=561, folders=350)
    assert quota.full_in_days == 0
    assert quota.note() == ("Pinata holds 561 files and folders of this deployment, at or over publish.pinata_files "
                            "500: the folders of days older than publish.keep_days 200 are deleted once their "
                            "dated KV keys are (publish.kv_deletes_per_day), over the next runs")
    assert PinQuota(500, 3, 2, 200, 10, pinned=440, folders=200).note() == ""
    # keep_days shorter than the look-back: no folder is kept, and the window alone fits
    assert "are deleted once their dated KV keys are" in PinQuota(500, 6, 2, 1, 10, pinned=520, folders=60).note()


def test_a_deployment_that_only_backfills_counts_only_what_it_holds():
    """No chart pinned alone: no cron window, no folder a day; it is told only once it holds the limit."""
    assert PinQuota(500, 3, 2, None, 10, pinned=450, folders=450).note() == ""
    assert PinQuota(500, 3, 2, None, 10, pinned=450, folders=450).full_in_days is None
    assert PinQuota(500, 3, 2, None, 10, pinned=500, folders=500).note() == (
        "Pinata holds 500 files and folders of this deployment, at or over publish.pinata_files 500; retire old "
        "days (publish.keep_days) or raise publish.pinata_files with a paid Pinata plan")


def test_the_estimate_is_above_the_whole_day_benchmarks_peaks():
    """``bench/publishing.py --day`` measured at most 280 pins at any moment for 3 sensors and 1,117 for 12
    (``day_pinned_most_mid_run``, docs/publishing.md), with no finished day's folder yet."""
    assert PinQuota(100_000, 3, 2, None, 10, pinned=1, folders=0).peak == 283
    assert PinQuota(100_000, 12, 2, None, 10, pinned=1, folders=0).peak == 1129
