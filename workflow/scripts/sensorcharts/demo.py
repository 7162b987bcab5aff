"""A reproducible demo database of synthetic but realistic readings (SQLite).

One reading a minute per sensor from ``DEMO_START`` to ``DEMO_END`` (UTC), which spans the 2025 spring-forward
(2025-03-09) and fall-back (2025-11-02) days in America/Los_Angeles. Temperature and humidity follow a diurnal
cycle in local solar time plus a seasonal trend and noise, pressure a slow random walk. Two outages leave gaps
(2025-03-09 04:00–06:30 and 2025-11-01 10:00–14:30 local) and one spike sits in temperature on 2025-10-31
at 15:07 local. The same seed gives the same rows, byte for byte.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from . import atomic

DEMO_START = datetime(2025, 3, 1, 8, 0)  # 2025-03-01 00:00 PST, naive UTC
DEMO_END = datetime(2025, 11, 11, 8, 0)  # 2025-11-11 00:00 PST
DEMO_ZONE = ZoneInfo("America/Los_Angeles")
GAPS_LOCAL = [("2025-03-09T04:00", "2025-03-09T06:30"), ("2025-11-01T10:00", "2025-11-01T14:30")]
SPIKE_LOCAL = "2025-10-31T15:07"

SCHEMA = """
CREATE TABLE sensor_readings (
    recorded_at TEXT NOT NULL,      -- UTC, 'YYYY-MM-DD HH:MM:SS'
    sensor_type TEXT NOT NULL,
    value REAL,
    device_id TEXT
);
"""


def _local_to_utc_minute(text: str) -> np.datetime64:
    local = datetime.fromisoformat(text).replace(tzinfo=DEMO_ZONE)
    return np.datetime64(local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None), "m")


def synthetic_readings(seed: int = 42) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{sensor: (utc_minutes, values)}`` for the demo span."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(np.datetime64(DEMO_START, "m"), np.datetime64(DEMO_END, "m"))
    keep = np.ones(len(minutes), dtype=bool)
    for a, b in GAPS_LOCAL:
        keep &= ~((minutes >= _local_to_utc_minute(a)) & (minutes < _local_to_utc_minute(b)))
    # Solar time at the site: UTC-8 all year, so the cycle does not jump with DST.
    hours = ((minutes - np.datetime64("1970-01-01T08:00")).astype(np.int64) % 1440) / 60.0
    season = (minutes - np.datetime64("2025-01-01T00:00")).astype(np.int64) / (1440 * 365.25)
    seasonal = -np.cos(2 * np.pi * (season - 0.05))  # coldest in January
    diurnal = np.sin(2 * np.pi * (hours - 9) / 24)  # warmest mid-afternoon

    n = len(minutes)
    weather = np.convolve(rng.normal(0, 1, n + 720), np.ones(720) / 720, mode="valid")[:n] * 40
    temperature = 15 + 7 * seasonal + 6 * diurnal + 0.8 * weather + rng.normal(0, 0.15, n)
    humidity = np.clip(62 - 18 * diurnal - 3 * weather + rng.normal(0, 0.8, n), 5, 100)
    pressure = 1013 + np.cumsum(rng.normal(0, 0.02, n)) * 0.5 + 4 * weather
    pressure = pressure - (pressure.mean() - 1013)
    spike = minutes == _local_to_utc_minute(SPIKE_LOCAL)
    temperature[spike] += 25.0

    return {
        "temperature": (minutes[keep], np.round(temperature[keep], 3)),
        "humidity": (minutes[keep], np.round(humidity[keep], 2)),
        "pressure": (minutes[keep], np.round(pressure[keep], 2)),
    }


def create_demo_database(path: str | os.PathLike, seed: int = 42) -> int:
    """Create the demo SQLite database at ``path`` (atomically); return the number of rows."""
    rows = 0
    with atomic.replacing(path) as tmp:
        with sqlite3.connect(tmp) as db:
            db.executescript(SCHEMA)
            for sensor, (minutes, values) in synthetic_readings(seed).items():
                stamps = np.datetime_as_string(minutes, unit="s").astype(object)
                text = [s.replace("T", " ") for s in stamps]
                db.executemany(
                    "INSERT INTO sensor_readings VALUES (?, ?, ?, 'station-1')",
                    zip(text, [sensor] * len(text), values.tolist()),
                )
                rows += len(text)
            db.execute("CREATE INDEX sensor_readings_time ON sensor_readings (recorded_at)")
        db.close()
    return rows
