"""sensorcharts.fingerprints.Refresher: one computation per block, files rewritten only when changed."""

from __future__ import annotations

from datetime import date, timedelta

from sensorcharts.fingerprints import Refresher

DAY = date(2025, 1, 10)


def make(tmp_path, rows, calls, written_to):
    def compute(days):
        calls.append(list(days))
        return {d.isoformat(): f"rows={rows.get(d, 0)} digest=1\n" for d in days}

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
    refresher = Refresher(lambda days: calls.append(days) or {}, str(tmp_path / "fp"), blocks=[[DAY]], window=1,
                          active=False)
    assert refresher.path(DAY).endswith("2025-01-10.txt") and calls == []
    assert refresher.has_rows(DAY)  # no file: unknown, so the day is read
