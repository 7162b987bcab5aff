"""What every chart shares: size, theme, the sensor it shows, its metadata, its figure and its PNG bytes.

PNG files are deterministic: the same data and software give the same bytes. Their text chunks carry the
chart's metadata except ``processing_time`` (and the job's bookkeeping: ``inputs_digest``, ``drawn``), which
would change the bytes on every run and therefore live only in the job's metadata JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import png  # noqa: E402
from .aggcanvas import Canvas  # noqa: E402
from .tables import Validity  # noqa: E402

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 4.0, 100
NO_DATA = "No data"
THEME = {"style": "whitegrid", "context": "notebook", "palette": "colorblind"}
HEATMAP_CMAP = "viridis"  # perceptually uniform and colour-blind safe


@dataclass(frozen=True)
class Sensor:
    name: str
    display_name: str
    unit: str
    validity: Validity = Validity()  # plausible range; values outside it are dropped unless kept

    @property
    def axis_label(self) -> str:
        return f"{self.display_name} ({self.unit})" if self.unit else self.display_name


def sensors_from_config(sensors: dict) -> list[Sensor]:
    """``config["sensors"]`` as Sensor records, in config order."""
    return [Sensor(name, spec["display_name"], spec["unit"], Validity.from_spec(spec))
            for name, spec in sensors.items()]


@dataclass
class ChartMeta:
    """What every chart carries; ``processing_time``, ``inputs_digest`` and ``drawn`` are not in the PNG."""

    filename: str
    sensor_type: str
    interval: str
    stamp: str
    data_points: int
    start_time: str
    end_time: str
    processing_time: float = 0.0
    # Daily and hourly charts: readings of the period not drawn (NULL, NaN, ±infinity, out of range and
    # dropped), and readings outside the plausible range (dropped or kept). None on cumulative charts, which
    # are drawn from the hourly tables (valid readings only).
    dropped_points: int | None = None
    out_of_range_points: int | None = None
    # Digest of everything the PNG's bytes follow from (chartcache.digest), and whether this job drew the
    # chart (False: its bytes were copied from the chart cache, since nothing it shows had changed).
    inputs_digest: str | None = None
    drawn: bool = True

    def png_text(self) -> dict[str, str]:
        text = {
            "Title": f"{self.sensor_type} {self.interval} {self.stamp}",
            "filename": self.filename,
            "sensor_type": self.sensor_type,
            "interval": self.interval,
            "data_points": str(self.data_points),
            "start_time": self.start_time,
            "end_time": self.end_time,
        }
        if self.dropped_points is not None:
            text["dropped_points"] = str(self.dropped_points)
        if self.out_of_range_points is not None:
            text["out_of_range_points"] = str(self.out_of_range_points)
        return text


def apply_theme() -> None:
    sns.set_theme(**THEME)


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure on the caching canvas (aggcanvas.Canvas)."""
    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    Canvas(figure)
    return figure


def png_bytes(figure: Figure, meta: ChartMeta) -> bytes:
    """The figure as last drawn on its canvas, as an RGB PNG with ``meta`` in text chunks; no timestamp or
    version goes in the file. The figure is opaque, so the alpha channel is dropped: a quarter fewer bytes,
    pixel for pixel the same picture."""
    return png.encode(figure.canvas.buffer_rgba(), meta.png_text(), DPI)
