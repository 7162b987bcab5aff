"""sensorcharts.fingerprints: one computation per block, files rewritten only when changed, values that last
across releases, and each sensor's newest reading."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from conftest import utc

from sensorcharts import fingerprints
from sensorcharts.connection import Source
from sensorcharts.fingerprints import Refresher, Survey
from sensorcharts.timegrid import zone

DAY = date(2025, 1, 10)
OUTSIDE = DAY - timedelta(days=30)
LA = zone("America/Los_Angeles")


def make(tmp_path, rows, calls, written_to):
    def compute(days):
        calls.append(list(days))
        return Survey({d.isoformat(): f"rows={rows.get(d, 0)} digest=1\n" for d in days}, {})

    return Refresher(compute, str(tmp_path / "fp"), blocks=[[DAY, DAY + timedelta(days=1)]], window=2,
                     active=True, after_write=written_to.append)


def test_a_block_is_computed_once_and_written_only_when_changed(tmp_path):
    calls, written = [], []
    refresher = make(tmp_path, {DAY: 5}, calls, written)
    assert refresher.path(DAY) == f"{tmp_path}/fp/2025-01-10.txt"
    refresher.path(DAY + timedelta(days=1))
    assert calls == [[DAY, DAY + timedelta(days=1)]]  # one query for the block
    # Snakemake caches directory listings while building the DAG: it is told the folder changed.
    assert written == [f"{tmp_path}/fp"]
    assert refresher.has_rows(DAY) and not refresher.has_rows(DAY + timedelta(days=1))

    # A new invocation with the same rows writes nothing (mtimes stay, nothing is redone)…
    calls, written = [], []
    again = make(tmp_path, {DAY: 5}, calls, written)
    again.path(DAY)
    assert calls and written == []
    # …and a day outside the blocks brings its own window.
    outside = DAY - timedelta(days=30)
    again.path(outside)
    assert calls[-1] == [outside - timedelta(days=1), outside]
    assert written == [f"{tmp_path}/fp"]


def test_inactive_refresher_queries_nothing_and_assumes_rows(tmp_path):
    calls = []
    refresher = Refresher(lambda days: calls.append(days) or Survey({}, {}), str(tmp_path / "fp"), blocks=[[DAY]],
                          window=1, active=False)
    assert refresher.path(DAY).endswith("2025-01-10.txt") and calls == []
    assert refresher.has_rows(DAY)  # no file: unknown, so the day is read


def test_the_newest_reading_of_each_sensor_is_the_latest_of_every_block_queried(tmp_path):
    early, late = datetime(2025, 1, 9, tzinfo=timezone.utc), datetime(2025, 1, 11, tzinfo=timezone.utc)
    found = {DAY: {"temperature": late, "humidity": early}, OUTSIDE: {"temperature": early, "pressure": early}}

    def compute(days):
        newest = {}
        for day in days:
            for sensor, last in found.get(day, {}).items():
                newest[sensor] = max(last, newest.get(sensor, last))
        return Survey({d.isoformat(): "rows=1 digest=1\n" for d in days}, newest)

    refresher = Refresher(compute, str(tmp_path / "fp"), blocks=[[DAY]], window=1, active=True)
    refresher.path(DAY)
    refresher.path(OUTSIDE)  # an older block, queried later, does not take a sensor back in time
    assert refresher.newest == {"temperature": late, "humidity": early, "pressure": early}
    assert DAY in refresher.done


# Rows whose fingerprints were computed by the code before fingerprints came from one row per (day, sensor):
# a fingerprint that changes value redoes every day of every deployment on upgrade, so they must not.
ROWS = [
    (utc(2025, 1, 15, 8, 0), "temperature", 20.5, "a"),
    (utc(2025, 1, 15, 9, 30, 15, 250000), "temperature", None, "a"),
    (utc(2025, 1, 15, 9, 30), "humidity", 41.0, None),
    (utc(2025, 1, 16, 7, 59, 59), "humidity", -3.25, "b"),
    (utc(2025, 1, 16, 8, 0), "temperature", 1e-7, "b"),
]
DAYS = [date(2025, 1, 14), date(2025, 1, 15), date(2025, 1, 16)]
EARLIER_RELEASE = {  # {(dialect, whether the table has a device column): lines}
    ("sqlite", True): {"2025-01-14": "rows=0 digest=2139300441\n", "2025-01-15": "rows=4 digest=3160890843\n",
                       "2025-01-16": "rows=1 digest=557978147\n"},
    ("sqlite", False): {"2025-01-14": "rows=0 digest=1689073658\n", "2025-01-15": "rows=4 digest=4341157878\n",
                        "2025-01-16": "rows=1 digest=642093536\n"},
    ("postgresql", True): {"2025-01-14": "rows=0 digest=939209394877445855\n",
                           "2025-01-15": "rows=4 digest=3380207340814078447\n",
                           "2025-01-16": "rows=1 digest=1087533855919307065\n"},
    ("postgresql", False): {"2025-01-14": "rows=0 digest=309919085755591443\n",
                            "2025-01-15": "rows=4 digest=2464117607012070120\n",
                            "2025-01-16": "rows=1 digest=280316457718510761\n"},
}


def test_fingerprints_keep_the_values_of_earlier_releases(readings_db):
    readings_db.insert(ROWS)
    readings_db.execute("CREATE TABLE no_device AS SELECT recorded_at, sensor_type, value FROM sensor_readings")
    for table, with_device in (("sensor_readings", True), ("no_device", False)):
        found = fingerprints.survey(Source(readings_db.url, table=table), ["temperature", "humidity"], DAYS, LA)
        assert found.lines == EARLIER_RELEASE[readings_db.kind, with_device]


def test_the_survey_gives_each_configured_sensors_newest_reading_up_to_now(readings_db):
    now = utc(2025, 1, 16, 10, 0, 0, 500000)  # 02:00 on the 16th in Los Angeles: "today"
    readings_db.insert(ROWS + [
        (utc(2025, 1, 16, 10, 30), "humidity", 40.0, "b"),  # stamped after now: not yet
        (utc(2025, 1, 16, 9), "wind", 3.0, "c"),  # not a configured sensor
    ])
    found = fingerprints.survey(Source(readings_db.url), ["temperature", "humidity", "pressure"], DAYS, LA, now)
    assert found.newest == {"temperature": utc(2025, 1, 16, 8, 0), "humidity": utc(2025, 1, 16, 7, 59, 59)}
    assert found.lines["2025-01-16"] == EARLIER_RELEASE[readings_db.kind, True]["2025-01-16"]  # the later row waits
    assert fingerprints.survey(Source(readings_db.url), ["pressure"], DAYS, LA, now).newest == {}


def test_sqlite_times_in_any_iso_form_are_compared_as_the_instants_they_name(sqlite_db):
    for stamp, sensor in [
        ("2025-01-15 21:00:00", "temperature"),
        ("2025-01-15T12:30:00-08:00", "temperature"),  # 20:30 UTC: the largest text, not the newest reading
        ("2025-01-15T12:30:00-08:00", "humidity"),
        ("2025-01-15T20:00:00Z", "humidity"),
        ("2025-01-15 late", "humidity"),  # not a time, and the largest text of all: skipped
    ]:
        sqlite_db.execute("INSERT INTO sensor_readings VALUES (%s, %s, 1.0, 'b')", (stamp, sensor))
    found = fingerprints.survey(Source(sqlite_db.url), ["temperature", "humidity"], [date(2025, 1, 15)], LA)
    assert found.newest == {"temperature": utc(2025, 1, 15, 21), "humidity": utc(2025, 1, 15, 20, 30)}
