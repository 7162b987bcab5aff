"""The cumulative heatmap: hourly means per local day (rows) and local hour (columns) over a window of days."""

from __future__ import annotations

from datetime import date

import matplotlib
import numpy as np

from .aggcanvas import Layers
from .chartbase import HEATMAP_CMAP, HEIGHT_IN, NO_DATA, WIDTH_IN, ChartMeta, Sensor, apply_theme, new_figure, png_bytes


def hour_matrix(hourly, sensor: str, days: list[date]) -> tuple[np.ndarray, int]:
    """Mean per local day (rows) and local wall-clock hour 0–23 (columns) from hourly tables.

    Devices and, on a fall-back day, the two slots sharing a wall-clock hour are combined weighted by
    their reading counts; an hour without readings stays NaN. Returns the matrix and the readings count.
    """
    rows = hourly[hourly["sensor"] == sensor]
    matrix = np.full((len(days), 24), np.nan)
    if rows.empty:
        return matrix, 0
    index = {d.isoformat(): i for i, d in enumerate(days)}
    r = rows["local_date"].map(index).to_numpy()
    c = rows["hour"].str.slice(11, 13).astype(int).to_numpy()
    counts = rows["count"].to_numpy(dtype=np.float64)
    sums = rows["mean"].to_numpy(dtype=np.float64) * counts
    ok = ~np.isnan(r.astype(np.float64))
    r, c, counts, sums = r[ok].astype(int), c[ok], counts[ok], sums[ok]
    total = np.zeros_like(matrix)
    weight = np.zeros_like(matrix)
    np.add.at(total, (r, c), sums)
    np.add.at(weight, (r, c), counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(weight > 0, total / weight, np.nan)
    return matrix, int(counts.sum())


def window_text(days: list[date]) -> str:
    """``2025-10-05 to 2025-11-03``, or the one date of a one-day window."""
    return days[0].isoformat() if len(days) == 1 else f"{days[0].isoformat()} to {days[-1].isoformat()}"


class Heatmap:
    """One reusable figure for the cumulative day × hour heatmap.

    Its axes (hour and date labels, the x label) are drawn before the cells and are the same for every
    sensor of a window: ``render`` draws them once per window (aggcanvas.Layers). The cells come after the
    axes (z-order above theirs); the two never overlap (no grid, no tick marks), so the order changes no pixel.
    """

    # Margins in inches, so that the title and the x label fit whatever the number of rows.
    TOP_IN, BOTTOM_IN = 0.45, 0.65

    def __init__(self, rows: int) -> None:
        apply_theme()
        height = max(HEIGHT_IN, 1.6 + 0.16 * rows)
        self.figure = new_figure(WIDTH_IN, height)
        bottom, top = self.BOTTOM_IN / height, self.TOP_IN / height
        self.ax = self.figure.add_axes((0.12, bottom, 0.74, 1 - bottom - top))
        cax = self.figure.add_axes((0.88, bottom, 0.02, 1 - bottom - top))
        cmap = matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad="0.88")
        self.image = self.ax.imshow(np.full((rows, 24), np.nan), aspect="auto", cmap=cmap,
                                    interpolation="nearest", extent=(-0.5, 23.5, rows - 0.5, -0.5), zorder=0.6)
        self.colorbar = self.figure.colorbar(self.image, cax=cax)
        self.ax.grid(False)
        self.ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
        self.no_data = self.ax.text(11.5, (rows - 1) / 2, NO_DATA, ha="center", va="center",
                                    fontsize=16, color="0.45")
        # Grey cells need a word: an hour without readings (or 02:00 on a spring-forward day).
        self.missing_note = self.figure.text(0.88, 0.25 / height, "grey: no readings", ha="left", va="center",
                                             fontsize="x-small", color="0.35")
        self.layers = Layers(self.figure, [self.figure.patch, self.ax.patch, self.ax.xaxis, self.ax.yaxis], keep=4)
        self.axes_shown = None  # what the axes show now: the key of their background in self.layers

    def draw(self, matrix: np.ndarray, days: list[date], sensor: Sensor, title: str, xlabel: str) -> None:
        self.image.set_data(matrix)
        finite = matrix[np.isfinite(matrix)]
        self.no_data.set_visible(not finite.size)
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi == lo:
            lo, hi = lo - 0.5, hi + 0.5
        self.image.set_clim(lo, hi)
        self.colorbar.set_label(sensor.axis_label)
        self.colorbar.ax.set_visible(bool(finite.size))  # no data: a 0-1 colour scale would mean nothing
        self.missing_note.set_visible(0 < finite.size < matrix.size)
        step = max(1, len(days) // 15)
        positions = list(range(len(days) - 1, -1, -step))[::-1]
        labels = [days[i].isoformat() for i in positions]
        self.ax.set_yticks(positions, labels)
        self.ax.set_xlabel(xlabel)
        self.axes_shown = (tuple(positions), tuple(labels), xlabel)
        self.ax.set_title(title, y=1.0, pad=6.0)

    def render(self, meta: ChartMeta) -> bytes:
        """The heatmap as ``draw`` left it, as PNG bytes."""
        self.layers.draw(self.axes_shown)
        return png_bytes(self.figure, meta)
