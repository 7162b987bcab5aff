"""Reading one local day of readings out of the database into Parquet, streaming.

PostgreSQL goes through ``COPY (query) TO STDOUT`` as CSV, parsed by Arrow's multithreaded CSV reader
from a pipe, so no row ever becomes a Python object (``bench/`` compares it with a server-side cursor).
SQLite has no such path; its rows are fetched in fixed-size batches, so memory stays bounded by the batch.
Either way the server sorts and drops exact duplicates (``SELECT DISTINCT … ORDER BY``).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
BATCH_ROWS = 100_000


def check_identifier(name: str, key: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise a ValueError naming config ``key``."""
    if not isinstance(name, str) or not IDENTIFIER_RE.fullmatch(name):
        raise ValueError(
            f"{key} must be a plain SQL identifier (letters, digits and _, not starting with a digit), got {name!r}"
        )
    return name


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@dataclass(frozen=True)
class Source:
    """Where readings live: a SQLAlchemy URL, a table and its column names (all validated)."""

    url: str
    table: str = "sensor_readings"
    time_column: str = "recorded_at"
    sensor_column: str = "sensor_type"
    value_column: str = "value"
    device_column: str | None = "device_id"

    def __post_init__(self) -> None:
        check_identifier(self.table, "database.table")
        check_identifier(self.time_column, "database.columns.time")
        check_identifier(self.sensor_column, "database.columns.sensor")
        check_identifier(self.value_column, "database.columns.value")
        if self.device_column is not None:
            check_identifier(self.device_column, "database.columns.device")

    @property
    def dialect(self) -> str:
        return urlsplit(self.url).scheme.split("+")[0]

    @classmethod
    def from_config(cls, url: str, db_config: dict) -> "Source":
        columns = db_config.get("columns", {})
        return cls(
            url=url,
            table=db_config.get("table", "sensor_readings"),
            time_column=columns.get("time", "recorded_at"),
            sensor_column=columns.get("sensor", "sensor_type"),
            value_column=columns.get("value", "value"),
            device_column=columns.get("device", "device_id"),
        )


def readings_schema(with_device: bool) -> pa.Schema:
    fields = [
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("sensor", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
    ]
    if with_device:
        fields.append(pa.field("device", pa.string()))
    return pa.schema(fields)


def connect(url: str):
    """A SQLAlchemy engine for ``url``; failures become one sentence with the password masked."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        with engine.connect():
            pass
    except Exception as exc:  # driver errors differ per backend; the message must not leak the password
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = reason.replace(url, mask_url(url))
        raise ConnectionError(f"cannot connect to the database {mask_url(url)}: {reason}") from None
    return engine


def table_has_device(engine, source: Source) -> bool:
    """Check the configured columns exist; report whether the table has the (optional) device column."""
    import sqlalchemy as sa

    inspector = sa.inspect(engine)
    if not inspector.has_table(source.table):
        raise LookupError(f"the database has no table {source.table!r}; set database.table to the readings table")
    present = {c["name"] for c in inspector.get_columns(source.table)}
    required = {
        "database.columns.time": source.time_column,
        "database.columns.sensor": source.sensor_column,
        "database.columns.value": source.value_column,
    }
    missing = [f"{col!r} ({key})" for key, col in required.items() if col not in present]
    if missing:
        raise LookupError(f"table {source.table!r} has no column {', '.join(missing)}; fix the config keys named")
    return source.device_column is not None and source.device_column in present


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

    The file appears only when complete: it is written under a temporary name and renamed.
    """
    engine = connect(source.url)
    try:
        with_device = table_has_device(engine, source)
        schema = readings_schema(with_device)
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
        rows = 0
        try:
            # Dictionary encoding pays only for the repetitive text columns; on the near-unique times and
            # values it costs most of the writer's CPU before falling back to plain encoding.
            text_columns = [name for name in ("sensor", "device") if name in schema.names]
            with pq.ParquetWriter(tmp, schema, compression="zstd", use_dictionary=text_columns) as writer:
                batches = _postgres_batches if source.dialect == "postgresql" else _sqlite_batches
                for batch in batches(engine, source, with_device, sensors, start, end, schema):
                    if batch.num_rows:
                        writer.write_batch(batch)
                        rows += batch.num_rows
            os.replace(tmp, out_path)
        finally:
            tmp.unlink(missing_ok=True)
        return rows
    finally:
        engine.dispose()


def _postgres_batches(engine, source, with_device, sensors, start, end, schema):
    # The session zone is UTC, so ::timestamp renders timestamptz (and a plain timestamp stored as UTC)
    # as naive UTC text, which Arrow parses fast and exactly.
    query = _select(source, with_device, f"{source.time_column}::timestamp")
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET TIME ZONE 'UTC'")
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
        with os.fdopen(read_fd, "rb") as source_pipe:
            # No rows (or a failed COPY) is an empty stream, which Arrow's CSV reader refuses to open.
            if source_pipe.peek(1):
                reader = pacsv.open_csv(
                    source_pipe,
                    read_options=pacsv.ReadOptions(column_names=schema.names, block_size=8 << 20),
                    convert_options=pacsv.ConvertOptions(
                        column_types=column_types,
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=False,
                    ),
                )
                for batch in reader:
                    yield _as_schema(batch, schema)
        producer.join()
        if failure:
            raise failure[0]
    finally:
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
        cur = raw.cursor()
        cur.execute(query, [*bounds, *sensors])
        while True:
            rows = cur.fetchmany(BATCH_ROWS)
            if not rows:
                break
            columns = list(zip(*rows))
            arrays = [pa.array(col, type=pa.string() if i != 2 else pa.float64(), from_pandas=True) for i, col in enumerate(columns)]
            batch = pa.RecordBatch.from_arrays(arrays, names=schema.names)
            yield _as_schema(batch, schema)
    finally:
        raw.close()


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
