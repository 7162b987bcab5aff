"""The publishing ledger: what this deployment has published, what KV and Pinata hold, what a day has spent.

One SQLite file (``results/publish/ledger.sqlite``), written only by the indexing job, inside one
transaction per step, so a killed job leaves it as it was after the last step that finished:

* ``charts``: the current version of every published chart: its dated key, where it lives (``url``, the pinned
  ``root`` CID), when its period ends, and the KV value to write;
* ``kv``: what KV holds as far as this deployment knows (a key is recorded once Cloudflare confirmed it);
* ``pins``: what Pinata holds (mirroring ``results/pinned/``), and since when nothing refers to a pin;
* ``usage``: KV writes and deletes per UTC day, and whether Cloudflare answered 10048 that day;
* ``facts``: small values: when the latest pointers were last refreshed, totals, the last publish, the
  times of the last day's runs that uploaded a chart's new version alone.

``sqlite3 results/publish/ledger.sqlite "select key, url from kv order by key"`` reads it.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS charts (
    key TEXT PRIMARY KEY, day TEXT NOT NULL, sensor TEXT NOT NULL, interval TEXT NOT NULL, stamp TEXT NOT NULL,
    url TEXT NOT NULL, root TEXT NOT NULL, in_folder INTEGER NOT NULL, ends REAL NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS charts_by_period ON charts (sensor, interval, ends);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, url TEXT NOT NULL, root TEXT NOT NULL, ends REAL, written_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pins (
    root TEXT PRIMARY KEY, pinata_id TEXT, kind TEXT, day TEXT, uploaded_at TEXT, unreferenced_since REAL,
    failed_deletes INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE TABLE IF NOT EXISTS usage (
    utc_day TEXT PRIMARY KEY, writes INTEGER NOT NULL DEFAULT 0, deletes INTEGER NOT NULL DEFAULT 0,
    writes_exhausted INTEGER NOT NULL DEFAULT 0, deletes_exhausted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS facts (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def step(self):
        """One transaction, taken with the write lock at once (two runs indexing together queue here)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # facts
    def fact(self, name: str, default=None):
        row = self.db.execute("SELECT value FROM facts WHERE name = ?", (name,)).fetchone()
        return json.loads(row["value"]) if row else default

    def set_fact(self, name: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (name, json.dumps(value)))

    def add_to(self, name: str, amount: int) -> None:
        if amount:
            self.set_fact(name, self.fact(name, 0) + amount)

    # usage
    def usage(self, utc_day: str) -> sqlite3.Row:
        self.db.execute("INSERT OR IGNORE INTO usage (utc_day) VALUES (?)", (utc_day,))
        return self.db.execute("SELECT * FROM usage WHERE utc_day = ?", (utc_day,)).fetchone()

    def spend(self, utc_day: str, writes: int = 0, deletes: int = 0) -> None:
        self.usage(utc_day)
        self.db.execute("UPDATE usage SET writes = writes + ?, deletes = deletes + ? WHERE utc_day = ?",
                        (writes, deletes, utc_day))

    def mark_exhausted(self, utc_day: str, what: str) -> None:
        self.usage(utc_day)
        column = {"writes": "writes_exhausted", "deletes": "deletes_exhausted"}[what]
        self.db.execute(f"UPDATE usage SET {column} = 1 WHERE utc_day = ?", (utc_day,))

    # charts and kv
    def put_chart(self, key: str, day: str, sensor: str, interval: str, stamp: str, url: str, root: str,
                  in_folder: bool, ends: float, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO charts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, day, sensor, interval, stamp, url, root, int(in_folder), ends, value))

    def dated_waiting(self, now: float) -> list[sqlite3.Row]:
        """Charts of finished periods whose dated key KV does not hold yet, newest period first."""
        return self.db.execute(
            "SELECT c.* FROM charts c LEFT JOIN kv ON kv.key = c.key "
            "WHERE c.ends <= ? AND (kv.url IS NULL OR kv.url != c.url) ORDER BY c.ends DESC, c.key", (now,)
        ).fetchall()

    def newest_charts(self) -> list[sqlite3.Row]:
        """Per sensor and interval, the chart whose period ends last (what ``latest`` should point to)."""
        rows = self.db.execute(
            "SELECT c.* FROM charts c JOIN (SELECT sensor, interval, max(ends) AS last FROM charts "
            "GROUP BY sensor, interval) n ON c.sensor = n.sensor AND c.interval = n.interval AND c.ends = n.last"
        ).fetchall()
        newest: dict[tuple[str, str], sqlite3.Row] = {}
        for row in rows:  # equal ends: the later stamp (01_2 after 01 on a fall-back day)
            group = (row["sensor"], row["interval"])
            if group not in newest or row["stamp"] > newest[group]["stamp"]:
                newest[group] = row
        return [newest[group] for group in sorted(newest)]

    def kv_entry(self, key: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM kv WHERE key = ?", (key,)).fetchone()

    def wrote(self, key: str, url: str, root: str, ends: float | None, at: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?)", (key, url, root, ends, at))

    def next_period_end(self, now: float) -> float | None:
        row = self.db.execute("SELECT min(ends) AS t FROM charts WHERE ends > ?", (now,)).fetchone()
        return row["t"]

    # pins
    def pins(self) -> dict[str, sqlite3.Row]:
        return {row["root"]: row for row in self.db.execute("SELECT * FROM pins")}

    def referenced_roots(self) -> set[str]:
        """Roots a KV key points to, or that hold a chart's current version (written to KV or waiting)."""
        rows = self.db.execute("SELECT root FROM kv UNION SELECT root FROM charts").fetchall()
        return {row["root"] for row in rows}
