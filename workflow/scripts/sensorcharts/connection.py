"""Where readings live and how to reach them: the configured source, its connection, and its errors.

A :class:`Source` is a SQLAlchemy URL plus the table and column names (validated as plain SQL identifiers,
since they are written into queries). Sessions are read-only, in UTC, and bounded by
``database.statement_timeout_seconds``; every failure of the database reaches the caller as one sentence
with the password masked (``ConnectionError``, ``LookupError``, ``QueryTimeout`` or ``QueryError``).

Standard library only at import time (SQLAlchemy and the drivers are imported when a connection is made):
the workflow imports this module to fingerprint the database while Snakemake builds its DAG.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
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
