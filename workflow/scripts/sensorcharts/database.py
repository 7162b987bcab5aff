"""Reading one local day of readings out of the database into Parquet, streaming.

PostgreSQL goes through ``COPY (query) TO STDOUT`` as CSV, parsed by Arrow's multithreaded CSV reader
from a pipe, so no row ever becomes a Python object (``bench/`` compares it with a server-side cursor).
SQLite has no such path; its rows are fetched in fixed-size batches, so memory stays bounded by the batch.
Either way the server sorts and drops exact duplicates (``SELECT DISTINCT … ORDER BY``).

The extract is a faithful copy of the rows: NULL stays null, NaN stays NaN, ±infinity stays ±infinity, and
implausible values stay as they are; what counts as a valid reading is decided downstream
(``sensorcharts.tables.mark_validity``). Sessions are read-only, in UTC, and bounded by
``database.statement_timeout_seconds``; every failure of the database reaches the caller as one sentence
with the password masked (``ConnectionError``, ``LookupError``, ``QueryTimeout`` or ``QueryError``).
"""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import atomic

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
BATCH_ROWS = 100_000
DEFAULT_STATEMENT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10


class QueryTimeout(TimeoutError):
    """A query ran longer than ``database.statement_timeout_seconds`` (or waited that long for a lock)."""


class QueryError(RuntimeError):
    """The database refused a query (permissions, types, …); the message carries its reason, password masked."""


# What a failing database raises out of this package: each carries one sentence a user can act on.
DATABASE_ERRORS = (ConnectionError, LookupError, TimeoutError, QueryError)


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


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` masked and its password (as written and URL-decoded) replaced by ``***``."""
    text = text.replace(url, mask_url(url))
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Source:
    """Where readings live: a SQLAlchemy URL, a table and its column names (all validated)."""

    url: str
    table: str = "sensor_readings"
    time_column: str = "recorded_at"
    sensor_column: str = "sensor_type"
    value_column: str = "value"
    device_column: str | None = "device_id"
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_S  # seconds a query may take (lock waits included)
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S  # seconds to wait for a PostgreSQL server to answer

    def __post_init__(self) -> None:
        check_identifier(self.table, "database.table")
        check_identifier(self.time_column, "database.columns.time")
        check_identifier(self.sensor_column, "database.columns.sensor")
        check_identifier(self.value_column, "database.columns.value")
        if self.device_column is not None:
            check_identifier(self.device_column, "database.columns.device")
        if not (isinstance(self.statement_timeout, (int, float)) and self.statement_timeout > 0):
            raise ValueError(
                f"database.statement_timeout_seconds must be a positive number, got {self.statement_timeout!r}")
        if not (isinstance(self.connect_timeout, int) and self.connect_timeout > 0):
            raise ValueError(
                f"database.connect_timeout_seconds must be a positive integer, got {self.connect_timeout!r}")

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
            statement_timeout=db_config.get("statement_timeout_seconds", DEFAULT_STATEMENT_TIMEOUT_S),
            connect_timeout=db_config.get("connect_timeout_seconds", DEFAULT_CONNECT_TIMEOUT_S),
        )

    def connect(self):
        """A SQLAlchemy engine for this source, with its timeouts (see :func:`connect`)."""
        return connect(self.url, self.connect_timeout, self.statement_timeout)


def readings_schema(with_device: bool) -> pa.Schema:
    fields = [
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("sensor", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
    ]
    if with_device:
        fields.append(pa.field("device", pa.string()))
    return pa.schema(fields)


def connect(url: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S,
            statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_S):
    """A SQLAlchemy engine for ``url``; failures become one sentence with the password masked.

    PostgreSQL sessions are read-only, in UTC, with ``statement_timeout``; the server must answer within
    ``connect_timeout`` seconds (libpq waits at least 2). SQLite waits up to ``statement_timeout`` for a
    lock (its busy timeout), and a SQLite URL naming a missing file is an error: connecting must never
    create an empty database.
    """
    import sqlalchemy as sa

    try:
        dialect = urlsplit(url).scheme.split("+")[0]
        if dialect == "sqlite":
            path = sa.engine.make_url(url).database
            if path and path != ":memory:" and not path.startswith("file:") and not Path(path).is_file():
                raise FileNotFoundError(f"no such file {path!r}")
            engine = sa.create_engine(url, connect_args={"timeout": float(statement_timeout)})
        elif dialect == "postgresql":
            engine = sa.create_engine(url, connect_args={"connect_timeout": max(2, int(connect_timeout))})
            # insert=True: before SQLAlchemy's own first-connect queries, as its documentation advises.
            sa.event.listen(engine, "connect", _postgres_session(statement_timeout), insert=True)
        else:
            engine = sa.create_engine(url)
        with engine.connect():
            pass
    except Exception as exc:  # driver errors differ per backend; the message must not leak the password
        raise ConnectionError(f"cannot connect to the database {mask_url(url)}: {_reason(exc, url)}") from None
    return engine


def _postgres_session(statement_timeout: float):
    milliseconds = max(1, int(round(statement_timeout * 1000)))

    def on_connect(dbapi_connection, _record) -> None:
        # Outside a transaction, so a later rollback cannot undo the settings.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")  # timestamptz renders, and naive columns compare, as UTC
                cur.execute("SET statement_timeout = %s", (milliseconds,))
                cur.execute("SET default_transaction_read_only = on")  # this workflow only ever reads
        finally:
            dbapi_connection.autocommit = autocommit

    return on_connect


def _reason(exc: BaseException, url: str) -> str:
    """The first line of a driver's message (SQLAlchemy's wrapper removed), password masked."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return scrub(text.splitlines()[0].strip() if text else type(orig).__name__, url)


def _is_driver_error(exc: BaseException) -> bool:
    import sqlite3

    import sqlalchemy as sa

    if isinstance(exc, (sa.exc.SQLAlchemyError, sqlite3.Error)):
        return True
    try:
        import psycopg2
    except ImportError:  # pragma: no cover - psycopg2 is a pinned dependency
        return False
    return isinstance(exc, psycopg2.Error)


def _translate(exc: BaseException, source: "Source") -> BaseException:
    """A driver error as one of the package's errors, one sentence each."""
    orig = getattr(exc, "orig", None) or exc
    reason = _reason(exc, source.url)
    where = mask_url(source.url)
    pgcode = getattr(orig, "pgcode", None) or ""
    lowered = reason.lower()
    # PostgreSQL's statement_timeout (57014 is also a cancel by hand, which is not a timeout); SQLite's busy
    # timeout ("database is locked") and the interrupt of sqlite_deadline.
    if (pgcode == "57014" and "statement timeout" in lowered) or lowered in (
        "interrupted", "database is locked", "database table is locked"
    ):
        return QueryTimeout(
            f"a query on the database {where} took longer than database.statement_timeout_seconds "
            f"({source.statement_timeout:g} s) and was cancelled ({reason}); raise that setting or find what "
            "slows or locks the database"
        )
    lost = pgcode.startswith(("08", "57P")) or (
        type(orig).__module__.startswith("psycopg2")
        and type(orig).__name__ in ("OperationalError", "InterfaceError")
        and not pgcode
    )
    if lost:
        return ConnectionError(f"lost the connection to the database {where} during a query ({reason})")
    return QueryError(f"the database {where} refused a query: {reason}")


@contextmanager
def database_errors(source: "Source"):
    """Turn driver errors raised inside the block into ConnectionError, QueryTimeout or QueryError."""
    try:
        yield
    except DATABASE_ERRORS:
        raise
    except Exception as exc:
        if not _is_driver_error(exc):
            raise
        raise _translate(exc, source) from None


@contextmanager
def sqlite_deadline(raw, seconds: float):
    """Interrupt SQLite statements on ``raw`` still running ``seconds`` from now (SQLite's statement timeout)."""
    con = raw.driver_connection
    deadline = time.monotonic() + seconds
    con.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        yield
    finally:
        con.set_progress_handler(None, 0)


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
