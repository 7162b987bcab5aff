"""Benchmark: one day of readings from PostgreSQL into Parquet — COPY + Arrow CSV vs a server-side cursor.

Methods, each run in a fresh subprocess (so peak RSS is per method) and timed from just before the
extraction to just after it (interpreter start and module imports excluded; what a method imports
lazily, e.g. SQLAlchemy in extract_day, counts, as it does in a Snakemake job):
  copy     the project's ``sensorcharts.database.extract_day`` (COPY ... TO STDOUT as CSV, piped into
           pyarrow's streaming CSV reader, written with ParquetWriter)
  cursor   a psycopg2 named (server-side) cursor, fetchmany batches -> pyarrow arrays -> ParquetWriter
  discard  baseline: ``COPY (same query) TO STDOUT`` into /dev/null; the server and transfer cost alone

Usage: tools/with-env python bench/extract_methods.py [--rows N | --quick] [--repeats 3]
Uses the PostgreSQL server DATABASE_URL names (a scratch database is created and dropped there),
otherwise a throwaway pgserver. The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DDL, libpq, postgres_server, scratch_database  # noqa: E402  (puts the package on sys.path)

from sensorcharts.database import Source, _select, extract_day, readings_schema  # noqa: E402

DAY = datetime(2024, 5, 1, tzinfo=timezone.utc)
END = DAY + timedelta(days=1)
SENSORS = ["humidity", "pressure", "temperature"]
METHODS = ["copy", "cursor", "discard"]
BATCH_ROWS = 100_000
libpq_url = libpq


PARAMS = {"start": DAY, "end": END, "sensors": tuple(SENSORS)}


# --- the methods (run inside a worker subprocess) -------------------------------------------------


def run_copy(url: str, out: Path) -> int:
    return extract_day(Source(url), SENSORS, DAY, END, out)


def run_cursor(url: str, out: Path) -> int:
    schema = readings_schema(with_device=True)
    # Same SELECT DISTINCT ... ORDER BY as the project, but the time column stays timestamptz:
    # psycopg2 returns aware datetimes, which pyarrow converts to UTC.
    query = _select(Source(url), True, "recorded_at")
    types = [f.type for f in schema]
    rows = 0
    con = psycopg2.connect(libpq_url(url))
    try:
        con.cursor().execute("SET TIME ZONE 'UTC'")
        cur = con.cursor(name="bench_extract")  # named => server-side; lives in this transaction
        cur.itersize = BATCH_ROWS
        cur.execute(query, PARAMS)
        with pq.ParquetWriter(out, schema, compression="zstd") as writer:
            while batch := cur.fetchmany(BATCH_ROWS):  # one FETCH FORWARD round trip per batch
                columns = [pa.array(col, type=t) for col, t in zip(zip(*batch), types)]
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
                rows += len(batch)
        cur.close()
    finally:
        con.close()
    return rows


def run_discard(url: str, out: Path) -> int:
    # The exact COPY statement extract_day sends (::timestamp under a UTC session, CSV).
    query = _select(Source(url), True, "recorded_at::timestamp")
    con = psycopg2.connect(libpq_url(url))
    try:
        cur = con.cursor()
        cur.execute("SET TIME ZONE 'UTC'")
        copy_sql = f"COPY ({cur.mogrify(query, PARAMS).decode()}) TO STDOUT WITH (FORMAT csv)"
        with open(os.devnull, "wb", buffering=1 << 20) as sink:  # same buffered sink type as extract_day
            cur.copy_expert(copy_sql, sink)
        return cur.rowcount
    finally:
        con.close()


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux carries ru_maxrss over fork + exec, so a worker would report the
    parent's peak (the data loading) if that was higher; VmHWM belongs to the process's own memory map."""
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_s() -> float:
    """CPU seconds of this (client) process, all threads; the server backend's are not included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(method: str, url: str, out: Path) -> None:
    """Run one method once; print its row count, seconds, CPU and peak RSS as JSON."""
    rss_before, cpu0, t0 = peak_rss_mb(), cpu_s(), time.perf_counter()
    rows = {"copy": run_copy, "cursor": run_cursor, "discard": run_discard}[method](url, out)
    seconds, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu_s": cpu, "rss_before_mb": rss_before,
                      "peak_rss_mb": peak_rss_mb()}))


def spawn(method: str, url: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--url", url, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{method} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- setup ----------------------------------------------------------------------------------------


def load_readings(url: str, n: int, workdir: Path) -> None:
    """COPY ``n`` random readings spread over DAY (in time order, as appended) into the (empty) table."""
    rng = np.random.default_rng(42)
    micros = np.sort(rng.integers(0, 86_400_000_000, n))
    times = np.datetime64(DAY.replace(tzinfo=None), "us") + micros.astype("timedelta64[us]")

    def pick(names: list[str]) -> pa.Array:
        indices = pa.array(rng.integers(0, len(names), n), pa.int32())
        return pa.DictionaryArray.from_arrays(indices, names).cast(pa.string())

    table = pa.table({
        "recorded_at": pa.array(times, pa.timestamp("us", tz="UTC")),  # written as '... .ffffffZ'
        "sensor_type": pick(SENSORS),
        "value": rng.normal(20.0, 5.0, n).round(3),
        "device_id": pick([f"device-{i:03d}" for i in range(50)]),
    })
    csv_path = workdir / "readings.csv"
    pacsv.write_csv(table, csv_path, pacsv.WriteOptions(include_header=False))
    con = psycopg2.connect(libpq_url(url))
    con.autocommit = True
    try:
        cur = con.cursor()
        with open(csv_path, "rb") as f:
            cur.copy_expert("COPY sensor_readings FROM STDIN WITH (FORMAT csv)", f, size=1 << 20)
        # VACUUM too: sets hint bits and the visibility map now, not during (or via autovacuum, beside) a timed run.
        cur.execute("VACUUM ANALYZE sensor_readings")
    finally:
        con.close()
    csv_path.unlink()


def check_same(copy_out: Path, cursor_out: Path, samples: int = 10_000) -> str:
    """The two Parquet files must hold the same schema, row count and rows (checked on a sample)."""
    a, b = pq.read_table(copy_out), pq.read_table(cursor_out)
    assert a.schema.equals(b.schema), f"schemas differ:\n{a.schema}\n{b.schema}"
    assert a.num_rows == b.num_rows, f"row counts differ: {a.num_rows} vs {b.num_rows}"
    rng = np.random.default_rng(0)
    idx = np.unique(np.concatenate([[0, a.num_rows - 1], rng.integers(0, a.num_rows, samples)]))
    assert a.take(idx).equals(b.take(idx)), "sampled rows differ"
    return f"copy and cursor outputs agree: {a.num_rows:,} rows, {len(idx):,} sampled rows identical"


def measure(admin_url: str, n: int, repeats: int, workdir: Path, methods=METHODS) -> dict[str, list[dict]]:
    """Load ``n`` readings into a scratch database on ``admin_url``'s server and run each of ``methods``
    ``repeats`` times, interleaved, each in a fresh subprocess; returns the runs per method."""
    with scratch_database(admin_url, "bench_extract", DDL) as url:
        t0 = time.perf_counter()
        load_readings(url, n, workdir)
        print(f"loaded {n:,} readings in {time.perf_counter() - t0:.1f} s", flush=True)

        spawn("discard", url, workdir / "warmup")  # untimed: warms the server's caches
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(repeats):  # interleaved, so drift affects all methods alike
            for m in methods:
                runs[m].append(spawn(m, url, workdir / f"{m}.parquet"))
        if "copy" in methods and "cursor" in methods:
            print(check_same(workdir / "copy.parquet", workdir / "cursor.parquet"))
    rows = runs[methods[0]][0]["rows"]
    assert all(r["rows"] == rows for m in methods for r in runs[m]), "methods returned different row counts"
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000, help="readings to load (default 2,000,000)")
    ap.add_argument("--quick", action="store_true", help="200,000 rows, for a run of a few seconds")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method; the median is reported")
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.url, args.out)
    n = 200_000 if args.quick else args.rows
    load0 = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        with postgres_server(Path(tmp)) as admin_url:
            runs = measure(admin_url, n, args.repeats, Path(tmp))

    # Everything here competes for the same cores (server backend, COPY thread, Arrow, Parquet), so
    # other load on the machine skews the comparison: say how busy it was.
    print(f"machine: {os.cpu_count()} CPUs, 1-min load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    rows = runs["copy"][0]["rows"]
    median = {m: statistics.median(r["seconds"] for r in runs[m]) for m in METHODS}
    rate = {m: rows / median[m] for m in METHODS}
    peak = {m: max(r["peak_rss_mb"] for r in runs[m]) for m in METHODS}
    base = {m: runs[m][0]["rss_before_mb"] for m in METHODS}
    cpu = {m: statistics.median(r["cpu_s"] for r in runs[m]) for m in METHODS}
    labels = {"copy": "(a) extract_day: COPY csv -> Arrow -> Parquet",
              "cursor": "(b) named cursor -> Arrow -> Parquet",
              "discard": "(c) COPY csv -> /dev/null (baseline)"}
    print(f"\n{rows:,} rows extracted, median of {args.repeats} runs each")
    print(f"{'method':<46} {'median s':>9} {'rows/s':>11} {'/ (c)':>6} {'client CPU s':>13}"
          f" {'peak RSS MB':>12} {'(after imports)':>16}")
    for m in METHODS:
        print(f"{labels[m]:<46} {median[m]:>9.3f} {rate[m]:>11,.0f} {rate[m] / rate['discard']:>6.2f} {cpu[m]:>13.2f}"
              f" {peak[m]:>12.0f} {base[m]:>16.0f}")
        times = ", ".join(f"{r['seconds']:.3f}" for r in runs[m])
        print(f"{'':<46} runs: {times}")
    print(json.dumps({
        "rows": rows,
        "copy_parquet_rows_per_s": round(rate["copy"]),
        "cursor_parquet_rows_per_s": round(rate["cursor"]),
        "copy_discard_rows_per_s": round(rate["discard"]),
        "copy_to_discard": round(rate["copy"] / rate["discard"], 3),
        "cursor_to_discard": round(rate["cursor"] / rate["discard"], 3),
        "copy_peak_rss_mb": round(peak["copy"], 1),
        "cursor_peak_rss_mb": round(peak["cursor"], 1),
    }))


if __name__ == "__main__":
    main()
