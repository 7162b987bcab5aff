"""Reading one local day of readings out of the database into Parquet, streaming.

PostgreSQL goes through ``COPY (query) TO STDOUT`` as CSV, parsed by Arrow's multithreaded CSV reader
from a pipe, so no row ever becomes a Python object (``bench/`` compares it with a server-side cursor).
SQLite has no such path; its rows are fetched in fixed-size batches, so memory stays bounded by the batch.
Either way the server sorts and drops exact duplicates (``SELECT DISTINCT … ORDER BY``).

The extract is a faithful copy of the rows: NULL stays null, NaN stays NaN, ±infinity stays ±infinity, and
implausible values stay as they are; what counts as a valid reading is decided downstream
(``sensorcharts.tables.mark_validity``). Connecting, the session settings and the one-sentence errors are
``sensorcharts.connection``'s; its public names are importable from here too.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import atomic
from .connection import (  # noqa: F401  (re-exported: what code outside the package imports from here)
    DATABASE_ERRORS,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_STATEMENT_TIMEOUT_S,
    QueryError,
    QueryTimeout,
    Source,
    check_identifier,
    connect,
    database_errors,
    mask_url,
    scrub,
    sqlite_deadline,
    table_has_device,
)

BATCH_ROWS = 100_000


def readings_schema(with_device: bool) -> pa.Schema:
    fields = [
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("sensor", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
    ]
    if with_device:
        fields.append(pa.field("device", pa.string()))
    return pa.schema(fields)


def _select(source: Source, with_device: bool, time_expr: str) -> str:
    cols = [f"{time_expr} AS recorded_at", f"{source.sensor_column} AS sensor", f"{source.value_column} AS value"]
    order = ["1", "2"]
    if with_device:
        cols.append(f"{source.device_column} AS device")
        order.append("4")
    order.append("3")
    # Identifiers were validated by Source; values are bound parameters (or mogrified for COPY).
    return (
        f"SELECT DISTINCT {', '.join(cols)} FROM {source.table} "
        f"WHERE {source.time_column} >= %(start)s AND {source.time_column} < %(end)s "
        f"AND {source.sensor_column} IN %(sensors)s ORDER BY {', '.join(order)}"
    )


def extract_day(
    source: Source, sensors: list[str], start: datetime, end: datetime, out_path: str | os.PathLike
) -> int:
    """Write the readings of ``sensors`` in UTC ``[start, end)`` to ``out_path`` (Parquet); return the row count.

    The file appears only when complete: it is written under a temporary name and renamed, and a failure
    (a lost connection, a timeout) leaves neither the file nor the temporary one.
    """
    engine = source.connect()
    try:
        with database_errors(source):
            with_device = table_has_device(engine, source)
            schema = readings_schema(with_device)
            rows = 0
            with atomic.replacing(out_path) as tmp:
                # Dictionary encoding pays only for the repetitive text columns; on the near-unique times and
                # values it costs most of the writer's CPU before falling back to plain encoding.
                text_columns = [name for name in ("sensor", "device") if name in schema.names]
                with pq.ParquetWriter(tmp, schema, compression="zstd", use_dictionary=text_columns) as writer:
                    batches = _postgres_batches if source.dialect == "postgresql" else _sqlite_batches
                    for batch in batches(engine, source, with_device, sensors, start, end, schema):
                        if batch.num_rows:
                            writer.write_batch(batch)
                            rows += batch.num_rows
            return rows
    finally:
        engine.dispose()


def _postgres_batches(engine, source, with_device, sensors, start, end, schema):
    # The session zone is UTC, so ::timestamp renders timestamptz (and a plain timestamp stored as UTC)
    # as naive UTC text, which Arrow parses fast and exactly.
    query = _select(source, with_device, f"{source.time_column}::timestamp")
    raw = engine.raw_connection()
    producer = None
    try:
        cur = raw.cursor()
        params = {"start": start, "end": end, "sensors": tuple(sensors)}
        copy_sql = f"COPY ({cur.mogrify(query, params).decode()}) TO STDOUT WITH (FORMAT csv)"
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def produce() -> None:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as sink:
                try:
                    cur.copy_expert(copy_sql, sink, size=1 << 20)
                except BaseException as exc:  # re-raised in the reading thread
                    failure.append(exc)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        column_types = {f.name: (pa.timestamp("us") if f.name == "recorded_at" else f.type) for f in schema}
        try:
            with os.fdopen(read_fd, "rb") as source_pipe:
                # No rows (or a failed COPY) is an empty stream, which Arrow's CSV reader refuses to open.
                if source_pipe.peek(1):
                    reader = pacsv.open_csv(
                        source_pipe,
                        read_options=pacsv.ReadOptions(column_names=schema.names, block_size=8 << 20),
                        convert_options=pacsv.ConvertOptions(
                            column_types=column_types,
                            # COPY writes NULL as an empty unquoted field and an empty text as "": only
                            # that is null, so NaN, Infinity and -Infinity arrive as the floats they are.
                            null_values=[""],
                            strings_can_be_null=True,
                            quoted_strings_can_be_null=False,
                        ),
                    )
                    for batch in reader:
                        yield _as_schema(batch, schema)
        except Exception:
            # The pipe is closed, so the COPY has ended. When it failed first (connection lost, timeout), a
            # truncated stream is only the symptom: report the database's error.
            producer.join()
            if failure and not isinstance(failure[0], OSError):
                raise failure[0] from None
            raise
        producer.join()
        if failure:
            raise failure[0]
    finally:
        if producer is not None:
            producer.join()
        raw.close()


def _sqlite_batches(engine, source, with_device, sensors, start, end, schema):
    # SQLite stores timestamps as text; the documented format is ISO 8601 in UTC, so text comparison
    # with bounds written the same way is chronological.
    query = _select(source, with_device, source.time_column)
    marks = ", ".join("?" for _ in sensors)
    query = query.replace("%(start)s", "?").replace("%(end)s", "?").replace("%(sensors)s", f"({marks})")
    bounds = [start.strftime("%Y-%m-%d %H:%M:%S"), end.strftime("%Y-%m-%d %H:%M:%S")]
    raw = engine.raw_connection()
    try:
        with sqlite_deadline(raw, source.statement_timeout):
            cur = raw.cursor()
            cur.execute(query, [*bounds, *sensors])
            while True:
                rows = cur.fetchmany(BATCH_ROWS)
                if not rows:
                    break
                columns = list(zip(*rows))
                arrays = [_sqlite_values(col) if i == 2 else _sqlite_text(col) for i, col in enumerate(columns)]
                batch = pa.RecordBatch.from_arrays(arrays, names=schema.names)
                yield _as_schema(batch, schema)
    finally:
        raw.close()


def _sqlite_values(column: tuple) -> pa.Array:
    """SQLite values as doubles. SQLite stores NaN as NULL (±infinity is kept); a value column holding text
    (a CSV import's 'NaN', 'inf', 'n/a') is read as the number it spells, or as null."""
    try:
        return pa.array(column, type=pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.array([_as_float(v) for v in column], type=pa.float64())


def _as_float(value) -> float | None:
    if value is None or isinstance(value, float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _sqlite_text(column: tuple) -> pa.Array:
    """Text columns; SQLite's dynamic typing may hold a number in them (a device id 7), read as text."""
    try:
        return pa.array(column, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array([None if v is None else v.decode() if isinstance(v, bytes) else str(v) for v in column],
                        type=pa.string())


def _as_schema(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a batch to the readings schema; naive timestamps are UTC by contract."""
    times = batch.column(0)
    if pa.types.is_string(times.type):
        times = _parse_text_times(times)
    times = times.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    columns = [times] + [batch.column(i).cast(schema.field(i).type) for i in range(1, batch.num_columns)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _parse_text_times(times: pa.Array) -> pa.Array:
    """Parse ISO 8601 text: with an offset or ``Z`` it is converted to UTC, without one it is UTC."""
    import pyarrow.compute as pc

    text = pc.replace_substring(times, "T", " ")
    has_offset = pc.match_substring_regex(text, r"(Z|[+-]\d\d(:?\d\d)?)$")
    if pc.any(has_offset).as_py():
        text = pc.if_else(has_offset, text, pc.binary_join_element_wise(text, "+00:00", ""))
        return text.cast(pa.timestamp("us", tz="UTC"))
    return text.cast(pa.timestamp("us"))
