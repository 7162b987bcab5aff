"""Shared fixtures: the package on sys.path, a real PostgreSQL server, and databases of readings.

PostgreSQL: the server ``DATABASE_URL`` names when it is a PostgreSQL URL, otherwise a throwaway server
started by ``pgserver``; each test gets a database of its own, created and dropped.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from workflow_runner import stop_processes_naming

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
os.environ.setdefault("MPLBACKEND", "Agg")

SQLITE_SCHEMA = """
CREATE TABLE sensor_readings (recorded_at TEXT NOT NULL, sensor_type TEXT NOT NULL, value REAL, device_id TEXT);
CREATE INDEX sensor_readings_time ON sensor_readings (recorded_at);
"""
POSTGRES_SCHEMA = """
CREATE TABLE sensor_readings (recorded_at timestamptz NOT NULL, sensor_type text NOT NULL,
                              value double precision, device_id text NULL);
CREATE INDEX sensor_readings_time ON sensor_readings (recorded_at);
"""

Row = tuple  # (recorded_at: aware datetime, sensor_type, value, device_id)


@pytest.fixture(scope="session", autouse=True)
def session_job_server(tmp_path_factory):
    """The tests' workflow runs get a warm job server (sensorcharts.warm) of their own: its socket goes in a
    runtime folder of this session (under pytest's base folder, which pytest prunes), and whatever runs from
    that folder is stopped at the end, so no server is shared with the user's runs or left idling after the
    tests. test_warm.py's rigs use folders of their own."""
    folder = str(tmp_path_factory.mktemp("runtime"))
    previous = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = folder
    yield folder
    if previous is None:
        os.environ.pop("XDG_RUNTIME_DIR", None)
    else:
        os.environ["XDG_RUNTIME_DIR"] = previous
    stop_processes_naming(Path(folder))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class ReadingsDB:
    """A real database holding ``sensor_readings``, with helpers to change rows."""

    def __init__(self, url: str, kind: str, path: Path | None = None, admin_url: str | None = None):
        self.url, self.kind, self.path, self.admin_url = url, kind, path, admin_url

    def drop(self) -> None:
        """Drop this PostgreSQL database (connections closed by force)."""
        import psycopg2
        from sqlalchemy.engine import make_url

        admin = psycopg2.connect(self.admin_url.replace("postgresql+psycopg2://", "postgresql://"))
        admin.autocommit = True
        try:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {make_url(self.url).database} WITH (FORCE)")
        finally:
            admin.close()

    def _connect(self):
        if self.kind == "sqlite":
            return sqlite3.connect(self.path)
        import psycopg2

        return psycopg2.connect(self.url.replace("postgresql+psycopg2://", "postgresql://"))

    def _stamp(self, t: datetime):
        # SQLite's documented storage: UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
        if self.kind == "sqlite":
            return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".")
        return t

    def execute(self, sql: str, params=()):
        mark = "?" if self.kind == "sqlite" else "%s"
        con = self._connect()
        try:
            cur = con.cursor()
            cur.execute(sql.replace("%s", mark), params)
            con.commit()
        finally:
            con.close()

    def insert(self, rows: list[Row]) -> None:
        mark = "?" if self.kind == "sqlite" else "%s"
        con = self._connect()
        try:
            cur = con.cursor()
            cur.executemany(
                f"INSERT INTO sensor_readings VALUES ({mark}, {mark}, {mark}, {mark})",
                [(self._stamp(t), s, None if v is None else float(v), d) for t, s, v, d in rows],
            )
            con.commit()
        finally:
            con.close()


def _pg_admin_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


@pytest.fixture(scope="session")
def postgres_server():
    """An admin URL of a real PostgreSQL server for this test session."""
    url = _pg_admin_url()
    if url:
        yield url
        return
    import shutil
    import tempfile

    import pgserver

    # Not under pytest's numbered temp folders: pytest keeps only the newest three per user, so another
    # pytest session on the machine could delete the server's data while this one runs.
    data = tempfile.mkdtemp(prefix="sensorcharts-pgdata-")
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def make_postgres(admin_url: str, prefix: str = "t", template: ReadingsDB | None = None) -> ReadingsDB:
    """A new database on the server at ``admin_url``: empty with ``sensor_readings``, or a copy of ``template``."""
    import psycopg2
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(admin_url.replace("postgresql+psycopg2://", "postgresql://"))
    admin.autocommit = True
    try:
        copy = f" TEMPLATE {make_url(template.url).database}" if template else ""
        admin.cursor().execute(f"CREATE DATABASE {name}{copy}")
    finally:
        admin.close()
    url = make_url(admin_url).set(drivername="postgresql+psycopg2", database=name)
    db = ReadingsDB(url.render_as_string(hide_password=False), "postgresql", admin_url=admin_url)
    if not template:
        db.execute(POSTGRES_SCHEMA)
    return db


def make_sqlite(path: Path, create: bool = True) -> ReadingsDB:
    """A SQLite file with an empty ``sensor_readings`` table (or the existing file with ``create=False``)."""
    if create:
        with sqlite3.connect(path) as con:
            con.executescript(SQLITE_SCHEMA)
        con.close()
    return ReadingsDB(f"sqlite:///{path}", "sqlite", path)


@pytest.fixture
def postgres_db(postgres_server):
    """A fresh PostgreSQL database with an empty ``sensor_readings`` table (dropped afterwards)."""
    db = make_postgres(postgres_server)
    yield db
    db.drop()


@pytest.fixture
def sqlite_db(tmp_path):
    """A fresh SQLite file with an empty ``sensor_readings`` table."""
    return make_sqlite(tmp_path / "readings.sqlite")


@pytest.fixture(params=["sqlite", "postgresql"])
def readings_db(request):
    """Each test using this runs once against SQLite and once against PostgreSQL."""
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "postgres_db")
