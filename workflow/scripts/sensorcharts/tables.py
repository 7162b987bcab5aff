"""Hourly and daily statistics of one local day's readings.

Tables are written one file per local day under hive-style ``date=YYYY-MM-DD`` folders, so
``results/tables/hourly`` reads as one dataset in pyarrow, pandas and DuckDB.

Only **valid** readings count (:func:`mark_validity`): a value that is not NULL, NaN or ±infinity and, unless
the sensor's ``out_of_range`` is ``keep``, inside its plausible range ``[valid_min, valid_max]``. The extract
keeps every row; the tables and charts apply this one rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .timegrid import day_bounds, hour_slots, iso_local

TS = pa.timestamp("us", tz="UTC")
STAT_FIELDS = [
    pa.field("count", pa.int64()),
    pa.field("mean", pa.float64()),
    pa.field("min", pa.float64()),
    pa.field("max", pa.float64()),
    pa.field("std", pa.float64()),  # sample standard deviation (n - 1); null for a single reading
    pa.field("first_reading", TS),
    pa.field("last_reading", TS),
]


def key_fields(with_device: bool) -> list[pa.Field]:
    fields = [pa.field("sensor", pa.string())]
    if with_device:
        fields.append(pa.field("device", pa.string()))
    return fields


def hourly_schema(with_device: bool) -> pa.Schema:
    return pa.schema(
        key_fields(with_device)
        + [
            pa.field("local_date", pa.string()),
            pa.field("hour", pa.string()),  # the hourly image stamp, e.g. 2025-11-02T01_2
            pa.field("utc_start", TS),
            pa.field("local_start", pa.string()),  # ISO 8601 with the local offset
        ]
        + STAT_FIELDS
    )


def daily_schema(with_device: bool) -> pa.Schema:
    return pa.schema(
        key_fields(with_device)
        + [
            pa.field("local_date", pa.string()),
            pa.field("utc_start", TS),
            pa.field("utc_end", TS),
            pa.field("local_start", pa.string()),
            pa.field("local_end", pa.string()),
            pa.field("hours", pa.float64()),  # 23, 24 or 25 around DST changes
        ]
        + STAT_FIELDS
    )


@dataclass(frozen=True)
class Validity:
    """A sensor's plausible range (inclusive; None for no bound) and whether values outside it are kept."""

    valid_min: float | None = None
    valid_max: float | None = None
    keep_out_of_range: bool = False

    @classmethod
    def from_spec(cls, spec: dict) -> "Validity":
        return cls(spec.get("valid_min"), spec.get("valid_max"), spec.get("out_of_range", "drop") == "keep")

    def masks(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(valid, out_of_range)`` of one sensor's ``values`` (float, NaN for NULL): see :func:`mark_validity`."""
        finite = np.isfinite(values)
        outside = np.zeros(len(values), dtype=bool)
        if self.valid_min is not None:
            outside |= finite & (values < self.valid_min)
        if self.valid_max is not None:
            outside |= finite & (values > self.valid_max)
        return finite & (~outside | self.keep_out_of_range), outside


def validity_from_config(sensors: dict) -> dict[str, Validity]:
    """``config["sensors"]`` as ``{sensor: Validity}``."""
    return {name: Validity.from_spec(spec or {}) for name, spec in sensors.items()}


def validity_masks(readings: pd.DataFrame, validity: dict[str, Validity] | None = None):
    """``(valid, out_of_range)`` boolean arrays for ``readings``: see :func:`mark_validity`."""
    values = readings["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    valid, outside = Validity().masks(values)
    if validity and len(readings):
        codes, names = pd.factorize(readings["sensor"])  # integer codes: string columns compare slowly
        for code, name in enumerate(names):
            rule = validity.get(name)
            if rule is not None:
                mine = np.flatnonzero(codes == code)
                valid[mine], outside[mine] = rule.masks(values[mine])
    return valid, outside


def mark_validity(readings: pd.DataFrame, validity: dict[str, Validity] | None = None) -> pd.DataFrame:
    """``readings`` with two boolean columns: ``valid`` (counted and drawn) and ``out_of_range``.

    NULL, NaN and ±infinity are never valid. A finite value outside its sensor's range is ``out_of_range``,
    and valid only when that sensor keeps such values. Sensors without an entry have no range.
    """
    valid, outside = validity_masks(readings, validity)
    return readings.assign(valid=valid, out_of_range=outside)


def _stats(grouped) -> pd.DataFrame:
    value = grouped["value"]
    stats = pd.DataFrame(
        {
            "count": value.count(),
            "mean": value.mean(),
            "min": value.min(),
            "max": value.max(),
            "std": value.std(ddof=1),
            "first_reading": grouped["recorded_at"].min(),
            "last_reading": grouped["recorded_at"].max(),
        }
    )
    return stats


def aggregate(
    readings: pd.DataFrame, day: date, tz: ZoneInfo, validity: dict[str, Validity] | None = None
) -> tuple[pa.Table, pa.Table]:
    """Return ``(hourly, daily)`` tables of ``readings`` (one local day, columns as in the extract).

    Only valid readings count (see :func:`mark_validity`); an hour or day without any has no row.
    """
    with_device = "device" in readings.columns
    keys = ["sensor", "device"] if with_device else ["sensor"]
    start, end = day_bounds(day, tz)
    slots = hour_slots(day, tz)
    marked = mark_validity(readings, validity)
    valid = readings[marked["valid"].to_numpy()].copy()

    start_us = np.datetime64(start.replace(tzinfo=None), "us")
    elapsed = valid["recorded_at"].dt.tz_convert(None).to_numpy(dtype="datetime64[us]") - start_us
    valid["slot"] = (elapsed // np.timedelta64(1, "h")).astype("int64")

    hourly = _stats(valid.groupby(keys + ["slot"], sort=True, dropna=False)).reset_index()
    hourly["local_date"] = day.isoformat()
    hourly["hour"] = [slots[i].stamp for i in hourly["slot"]]
    hourly["utc_start"] = pd.to_datetime([slots[i].start for i in hourly["slot"]], utc=True)
    hourly["local_start"] = [iso_local(slots[i].start, tz) for i in hourly["slot"]]

    daily = _stats(valid.groupby(keys, sort=True, dropna=False)).reset_index()
    daily["local_date"] = day.isoformat()
    daily["utc_start"] = pd.Timestamp(start)
    daily["utc_end"] = pd.Timestamp(end)
    daily["local_start"] = iso_local(start, tz)
    daily["local_end"] = iso_local(end, tz)
    daily["hours"] = (end - start).total_seconds() / 3600

    return (
        _to_table(hourly, hourly_schema(with_device)),
        _to_table(daily, daily_schema(with_device)),
    )


def _to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    frame = frame.reindex(columns=schema.names)
    if frame.empty:
        return schema.empty_table()
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def read_readings(path: str | os.PathLike) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()
