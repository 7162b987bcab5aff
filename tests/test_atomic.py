"""sensorcharts.atomic: a file appears whole or not at all."""

from __future__ import annotations

import pytest

from sensorcharts import atomic


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
