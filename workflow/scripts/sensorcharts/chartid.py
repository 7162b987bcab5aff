"""A chart's identity (sensor, interval, stamp) and every name made from it: its image path, its place in a
day's IPFS folder, its KV keys. One place builds and parses them, so they cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

INTERVALS = ("daily", "hourly", "cumulative")
IMAGES = "results/images"


@dataclass(frozen=True, order=True)
class ChartId:
    sensor: str
    interval: str
    stamp: str  # a date (YYYY-MM-DD) for daily and cumulative charts, an hour stamp for hourly ones

    @classmethod
    def from_meta(cls, meta: dict) -> "ChartId":
        """From a chart's metadata (``sensor_type``, ``interval``, ``stamp``)."""
        return cls(meta["sensor_type"], meta["interval"], meta["stamp"])

    @classmethod
    def from_path(cls, path) -> "ChartId":
        """From an image path ``…/{sensor}/{interval}/{stamp}.png`` (under results/images or in a folder)."""
        parts = PurePosixPath(str(path).replace("\\", "/")).parts
        if len(parts) < 3 or not parts[-1].endswith(".png") or parts[-2] not in INTERVALS:
            raise ValueError(f"not a chart path (…/sensor/interval/stamp.png): {path}")
        return cls(parts[-3], parts[-2], parts[-1][: -len(".png")])

    @property
    def image(self) -> str:
        """Where the workflow writes it: ``results/images/{sensor}/{interval}/{stamp}.png``."""
        return f"{IMAGES}/{self.folder_path}"

    @property
    def folder_path(self) -> str:
        """Its path inside a day's IPFS folder (and under results/images): ``{sensor}/{interval}/{stamp}.png``."""
        return f"{self.sensor}/{self.interval}/{self.stamp}.png"

    @property
    def key(self) -> str:
        """Its dated KV key (also its key in a receipts file): ``{sensor}:{interval}:{stamp}``."""
        return f"{self.sensor}:{self.interval}:{self.stamp}"

    @property
    def latest_key(self) -> str:
        """The KV key that points to the newest chart of its sensor and interval."""
        return f"{self.sensor}:{self.interval}:latest"

    @property
    def file_name(self) -> str:
        """A flat name for an upload of the chart alone: ``{sensor}_{interval}_{stamp}.png``."""
        return f"{self.sensor}_{self.interval}_{self.stamp}.png"


def day_charts(sensors, date: str, hour_labels) -> dict[str, list[ChartId]]:
    """A local day's charts by interval: one daily, one hourly per hour label (``T00``…), one cumulative, per
    sensor."""
    return {
        "daily": [ChartId(s, "daily", date) for s in sensors],
        "hourly": [ChartId(s, "hourly", f"{date}{label}") for s in sensors for label in hour_labels],
        "cumulative": [ChartId(s, "cumulative", date) for s in sensors],
    }
