"""sensorcharts.atomic: a file appears whole or not at all; a run removes what killed writers left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sensorcharts import atomic, jobs


def test_write_creates_folders_and_replaces_whole(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic.write_text(target, "first")
    atomic.write_text(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # no temporary file left


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    atomic.write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.replacing(target) as tmp:
            tmp.write_bytes(b"half of the new cont")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failure_before_the_first_version_leaves_nothing(tmp_path):
    target = tmp_path / "new.parquet"
    with pytest.raises(ValueError):
        with atomic.replacing(target) as tmp:
            tmp.write_text("partial")
            raise ValueError("lost connection")
    assert list(tmp_path.iterdir()) == []


def test_json_is_indented_keeps_text_as_it_is_and_ends_with_a_newline(tmp_path):
    target = tmp_path / "meta.json"
    atomic.write_json(target, {"unit": "°C", "points": [1]})
    assert target.read_text(encoding="utf-8") == '{\n "unit": "°C",\n "points": [\n  1\n ]\n}\n'


def test_parquet_is_written_whole_and_zstd_compressed(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = tmp_path / "date=2025-01-15" / "data.parquet"
    table = pa.table({"sensor": ["temperature"], "count": [1440]})
    atomic.write_parquet(target, table)
    assert pq.read_table(target).equals(table)
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).compression == "ZSTD"
    assert [p.name for p in target.parent.iterdir()] == ["data.parquet"]


WRITER = """
import os, signal, sys
from sensorcharts import atomic
with atomic.replacing(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half of it")
    if sys.argv[2] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    print(tmp.name, flush=True)
    sys.stdin.read()  # a live writer, until told to finish
"""


def _writer(target, how):
    env = dict(os.environ, PYTHONPATH=str(Path(atomic.__file__).parents[1]))
    return subprocess.Popen([sys.executable, "-c", WRITER, str(target), how], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_a_run_removes_what_killed_writers_left_and_keeps_what_live_ones_write(tmp_path):
    charts = tmp_path / "results" / "images" / "hourly"
    killed = _writer(charts / "2025-01-03T14.png", "die")
    assert killed.wait() == -signal.SIGKILL
    [left] = charts.iterdir()  # atomic's temporary name, which the sweep must recognise
    live = _writer(charts / "2025-01-03T15.png", "live")
    live_name = live.stdout.readline().strip()
    # Written elsewhere (a cluster node): its PID means nothing here, so only its age counts.
    elsewhere = "0" if atomic.WRITER != "00000000" else "1"
    foreign = charts / f".2025-01-03T16.png.{elsewhere * 8}.{killed.pid}.1.tmp"
    stale = charts / f".2025-01-01T00.png.{elsewhere * 8}.{os.getpid()}.1.tmp"  # untouched for over a day
    for path in (foreign, stale):
        path.write_bytes(b"x")
    os.utime(stale, (time.time() - jobs.ORPHANED_AFTER_S - 60,) * 2)
    huge = charts / f".x.png.{atomic.WRITER}.{2**70}.1.tmp"  # no such PID: gone, and no error
    huge.write_bytes(b"x")
    others = [charts / ".keep.tmp", charts / ".notes.1.2.tmp", charts / "2025-01-02T00.png"]
    for path in others:
        path.write_bytes(b"y")
    cache = tmp_path / "chart-cache"
    cached = _writer(cache / "0123.png", "die")
    assert cached.wait() == -signal.SIGKILL
    [cache_left] = cache.iterdir()

    below = _writer(charts / "sub" / "x.png", "die")  # in a folder not asked for: left alone
    assert below.wait() == -signal.SIGKILL

    removed = jobs.remove_orphaned_temporaries([str(charts), str(cache), str(tmp_path / "none")])

    assert sorted(removed) == sorted(str(p) for p in (left, stale, huge, cache_left))
    kept = [live_name, foreign.name, "sub", *(p.name for p in others)]
    assert sorted(p.name for p in charts.iterdir()) == sorted(kept)
    assert len(list((charts / "sub").iterdir())) == 1
    assert list(cache.iterdir()) == []
    live.communicate("")  # the live writer finishes: its file is renamed into place
    assert live.returncode == 0
    assert (charts / "2025-01-03T15.png").read_bytes() == b"half of it"
    assert jobs.remove_orphaned_temporaries([str(charts)]) == []
