"""Daily, hourly and cumulative charts.

A job draws many charts, so each kind keeps one figure and updates its artists per chart instead of
building a new figure (the costly part of a naive ``plt.figure(); sns.lineplot(); savefig()``).
X positions are computed from UTC instants and the ticks placed at local wall-clock hours, so DST days
are drawn exactly (23 or 25 hours wide) without relying on matplotlib's date locators.

PNG files are deterministic: the same data and software give the same bytes. Their tEXt chunks carry the
chart's metadata except ``processing_time``, which would change the bytes on every run and therefore
lives only in the job's metadata JSON.
"""

from __future__ import annotations

import functools
import io
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import atomic  # noqa: E402
from .tables import Validity  # noqa: E402
from .timegrid import (  # noqa: E402
    clock_changes,
    cumulative_window,
    day_bounds,
    hour_slots,
    iso_local,
    zone_abbreviations,
)

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 4.0, 100
GAP_FACTOR = 5  # a gap is a step longer than this many typical sampling intervals
MIN_GAP_S = 120.0  # … and never shorter than two minutes
NO_DATA = "No data"
PNG_COMPRESS_LEVEL = 3  # see png_bytes
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
    """What every chart carries; ``processing_time`` is excluded from the PNG bytes."""

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


# ---------------------------------------------------------------------------------------------------------
# Series preparation
# ---------------------------------------------------------------------------------------------------------


def break_gaps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN between readings further apart than the gap threshold, so no line crosses a gap.

    ``x`` is in seconds and sorted. The threshold is ``GAP_FACTOR`` times the median step (at least
    ``MIN_GAP_S``), which adapts to one-second and one-hour sensors alike.
    """
    if len(x) < 2:
        return x, y
    step = np.diff(x)
    threshold = max(GAP_FACTOR * float(np.median(step)), MIN_GAP_S)
    cut = np.flatnonzero(step > threshold) + 1
    if not len(cut):
        return x, y
    return np.insert(x, cut, np.nan), np.insert(y, cut, np.nan)


def decimate(x: np.ndarray, y: np.ndarray, x0: float, x1: float, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep, per pixel column and per unbroken segment, its (first) minimum and (last) maximum, in time order.

    The drawn line is then indistinguishable from the full series (every column spans the same
    vertical extent) while the number of vertices is at most ``4 * columns`` plus gap markers.
    """
    n = len(x)
    if n <= 4 * columns:
        return x, y
    nan = np.isnan(y)
    segment = np.cumsum(nan)
    keep = ~nan
    xs, ys, seg = x[keep], y[keep], segment[keep]
    if not len(xs):
        return xs, ys
    col = np.clip(((xs - x0) / (x1 - x0) * columns).astype(np.int64), 0, columns - 1)
    key = seg * columns + col  # non-decreasing because x is sorted: each group is one run of equal keys
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(key)]))
    at_min = np.flatnonzero(ys == np.minimum.reduceat(ys, starts)[group])
    at_max = np.flatnonzero(ys == np.maximum.reduceat(ys, starts)[group])
    first_min = at_min[np.r_[True, group[at_min][1:] != group[at_min][:-1]]]  # earliest minimum per group
    last_max = at_max[np.r_[group[at_max][1:] != group[at_max][:-1], True]]  # latest maximum per group
    picks = np.unique(np.concatenate([first_min, last_max]))  # positions of min and max, time order
    out_x, out_y, out_seg = xs[picks], ys[picks], seg[picks]
    breaks = np.flatnonzero(np.diff(out_seg) != 0) + 1
    return np.insert(out_x, breaks, np.nan), np.insert(out_y, breaks, np.nan)


def isolated(y: np.ndarray) -> np.ndarray:
    """Indices of finite values with no finite neighbour: a line through them would draw nothing."""
    finite = np.isfinite(y)
    before = np.r_[False, finite[:-1]]
    after = np.r_[finite[1:], False]
    return np.flatnonzero(finite & ~before & ~after)


def _padded_limits(values: list[np.ndarray]) -> tuple[float, float] | None:
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if len(v)]
    if not finite:
        return None
    lo = min(float(v.min()) for v in finite)
    hi = max(float(v.max()) for v in finite)
    pad = (hi - lo) * 0.05 if hi > lo else max(abs(hi) * 0.05, 0.5)
    return lo - pad, hi + pad


# ---------------------------------------------------------------------------------------------------------
# Line charts (daily and hourly)
# ---------------------------------------------------------------------------------------------------------


class LineChart:
    """One reusable figure for time-series charts."""

    def __init__(self) -> None:
        apply_theme()
        self.figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_axes((0.08, 0.15, 0.89, 0.74))
        self.palette = sns.color_palette(THEME["palette"])
        self.lines = []
        self.no_data = self.ax.text(
            0.5, 0.5, NO_DATA, transform=self.ax.transAxes, ha="center", va="center", fontsize=16, color="0.45"
        )
        self.columns = int(self.ax.get_position().width * WIDTH_IN * DPI)
        # A clock change (DST) is a dashed vertical line with its text at the top: on those days the hour
        # ticks are unevenly spaced, and a reader should see why. One line is enough for any real zone.
        self.change_line = self.ax.axvline(0.0, color="0.35", lw=1.0, ls="--", zorder=1.5, visible=False)
        self.change_text = self.ax.text(0.0, 0.98, "", transform=self.ax.get_xaxis_transform(), ha="left",
                                        va="top", fontsize="small", color="0.25", visible=False)

    def _line(self, i: int):
        while len(self.lines) <= i:
            (line,) = self.ax.plot([], [], lw=1.2, color=self.palette[len(self.lines) % len(self.palette)])
            self.lines.append(line)
        return self.lines[i]

    def draw(
        self,
        series: list[tuple[str | None, np.ndarray, np.ndarray]],
        xlim: tuple[float, float],
        ticks: list[tuple[float, str]],
        xlabel: str,
        ylabel: str,
        title: str,
        clock_change: tuple[float, str] | None = None,
    ) -> int:
        """Draw ``series`` of ``(label, x, y)``; return the number of readings shown (before decimation).

        ``clock_change``: ``(x, text)`` of a DST change inside the period, marked by a dashed line.
        """
        points = 0
        ys = []
        for i, (label, x, y) in enumerate(series):
            points += int(np.isfinite(y).sum())
            x, y = break_gaps(x, y)
            x, y = decimate(x, y, xlim[0], xlim[1], self.columns)
            line = self._line(i)
            line.set_data(x, y)
            # A reading alone between gaps or invalid values (a single reading in an hour) is a dot.
            alone = isolated(y)
            line.set_marker("o" if len(alone) else "None")
            line.set_markersize(3.0)
            line.set_markevery(alone.tolist() if len(alone) else None)
            line.set_label(label if label is not None else f"_series{i}")
            line.set_visible(True)
            ys.append(y)
        for line in self.lines[len(series) :]:
            line.set_data([], [])
            line.set_marker("None")
            line.set_markevery(None)
            line.set_visible(False)
            line.set_label("_hidden")
        limits = _padded_limits(ys)
        self.no_data.set_visible(limits is None)
        self.ax.set_ylim(*(limits or (0.0, 1.0)))
        self.ax.tick_params(axis="y", labelleft=limits is not None)  # no data: a 0-1 scale would mean nothing
        self.change_line.set_visible(clock_change is not None)
        self.change_text.set_visible(clock_change is not None)
        if clock_change is not None:
            self.change_line.set_xdata([clock_change[0]] * 2)
            self.change_text.set_x(clock_change[0] + 0.005 * (xlim[1] - xlim[0]))
            self.change_text.set_text(clock_change[1])
        self.ax.set_xlim(*xlim)
        self.ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
        self.ax.set_xlabel(xlabel)
        self.ax.set_ylabel(ylabel)
        # A fixed title position: matplotlib would otherwise measure every tick label to place it (~5 ms).
        self.ax.set_title(title, y=1.0, pad=6.0)
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        if sum(1 for label, _, _ in series if label is not None) > 1:
            self.ax.legend(loc="upper right", fontsize="small", title="device")
        return points


def png_bytes(figure: Figure, meta: ChartMeta) -> bytes:
    """The figure as an RGB PNG with ``meta`` in tEXt chunks; no timestamp or version goes in the file.

    The figure is opaque, so the alpha channel matplotlib would save is dropped: a quarter fewer bytes to
    compress and smaller files, pixel for pixel the same picture. zlib level 3 instead of 6: ~10 instead
    of ~14 ms a chart (a fifth of its cost) for files ~5 % larger (~53 instead of ~50 KB a daily chart).
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    figure.canvas.draw()
    rgba = figure.canvas.buffer_rgba()
    image = Image.frombuffer("RGBA", (rgba.shape[1], rgba.shape[0]), rgba, "raw", "RGBA", 0, 1).convert("RGB")
    info = PngInfo()
    for key, value in meta.png_text().items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="png", pnginfo=info, dpi=(DPI, DPI), compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def line_chart() -> LineChart:
    """This process's line chart: every call of render_day draws on it (draw() resets all it sets)."""
    return LineChart()


@functools.lru_cache(maxsize=2)
def heatmap_of(rows: int) -> Heatmap:
    """This process's heatmap figure for windows of ``rows`` days."""
    return Heatmap(rows)


def warm_up(window_days: int = 30) -> None:
    """Build this process's figures and draw each once, in memory, so that the next chart starts warm.

    For a process that forks jobs (sensorcharts.warm): a first chart costs ~25 ms more than the next ones
    (figure and tick artists, font loading, text layout caches, the PNG encoder's import). Every draw sets
    all it shows, so what is drawn here never reaches a later chart.
    """
    meta = ChartMeta("warm-up.png", "warm-up", "daily", "1970-01-01", 0, "", "")
    chart = line_chart()
    x = np.linspace(0.0, 3600.0, 61)
    chart.draw([(None, x, np.sin(x / 600.0))], (0.0, 3600.0), [(0.0, "00:00"), (1800.0, "00:30")],
               "Local time (UTC)", "value", "warm-up")
    png_bytes(chart.figure, meta)
    heatmap = heatmap_of(window_days)
    days = [date(1970, 1, 1) + timedelta(days=i) for i in range(window_days)]
    heatmap.draw(np.arange(window_days * 24, dtype=float).reshape(window_days, 24), days,
                 Sensor("warm-up", "Warm-up", "", Validity()), "warm-up", "Local hour (UTC)")
    png_bytes(heatmap.figure, meta)


def save_png(figure: Figure, path: str | os.PathLike, meta: ChartMeta) -> None:
    """Write the PNG under a temporary name and rename it."""
    atomic.write_bytes(path, png_bytes(figure, meta))


class Track:
    """One sensor's readings of a day as arrays in time order, cut into any period by binary search.

    Drawing 75 charts a day from one frame would otherwise filter the whole frame (pandas, string columns)
    once per chart. An invalid reading (see :func:`sensorcharts.tables.validity_masks`) keeps its place as
    NaN: the line breaks there instead of joining its neighbours, and it cannot stretch the y axis.
    """

    def __init__(self, t_us: np.ndarray, y: np.ndarray, valid: np.ndarray, out_of_range: np.ndarray,
                 devices: list[tuple[str, np.ndarray]]):
        self.t_us, self.y, self.dropped, self.out_of_range = t_us, np.where(valid, y, np.nan), ~valid, out_of_range
        # (label, times, values) per device, only when there are several: cut per chart, gathered once.
        self.devices = [(label, self.t_us[positions], self.y[positions]) for label, positions in devices]

    def _range(self, lo_us: int, hi_us: int) -> tuple[int, int]:
        a, b = np.searchsorted(self.t_us, [lo_us, hi_us], side="left")
        return int(a), int(b)

    def series(self, lo_us: int, hi_us: int, origin_us: int) -> list[tuple[str | None, np.ndarray, np.ndarray]]:
        """Per device (label None for one device), x in seconds since ``origin_us`` and y, over [lo, hi)."""
        if not self.devices:
            a, b = self._range(lo_us, hi_us)
            return [(None, (self.t_us[a:b] - origin_us) / 1e6, self.y[a:b])]
        out = []
        for label, t, y in self.devices:
            a, b = np.searchsorted(t, [lo_us, hi_us], side="left")
            if b > a:
                out.append((label, (t[a:b] - origin_us) / 1e6, y[a:b]))
        if len(out) <= 1:  # one device in this period: no legend
            return [(None, *out[0][1:])] if out else [(None, np.empty(0), np.empty(0))]
        return out

    def counts(self, lo_us: int, hi_us: int) -> tuple[int, int]:
        """``(dropped, out of range)`` readings in [lo, hi)."""
        a, b = self._range(lo_us, hi_us)
        return int(self.dropped[a:b].sum()), int(self.out_of_range[a:b].sum())


def tracks(frame, names, validity: dict | None = None) -> dict[str, Track]:
    """A :class:`Track` per sensor in ``names``, from a frame of readings (columns as in the extract).

    String columns are factorized once (integer codes), since comparing or converting pandas strings row by
    row costs more than drawing on a dense day.
    """
    import pandas as pd

    from .tables import validity_masks

    if "valid" in frame.columns:  # marked already (tables.mark_validity)
        valid_all, outside_all = frame["valid"].to_numpy(dtype=bool), frame["out_of_range"].to_numpy(dtype=bool)
    else:
        valid_all, outside_all = validity_masks(frame, validity)
    t_all = frame["recorded_at"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    y_all = frame["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    sensor_codes, sensor_names = pd.factorize(frame["sensor"])
    code_of = {name: code for code, name in enumerate(sensor_names)}
    if "device" in frame.columns:
        device_codes, device_labels = pd.factorize(frame["device"], use_na_sentinel=False)
    else:
        device_codes, device_labels = np.zeros(len(frame), dtype=np.int64), [None]
    out = {}
    for name in names:
        mine = np.flatnonzero(sensor_codes == code_of.get(name, -2))
        mine = mine[np.argsort(t_all[mine], kind="stable")]  # extracts are in time order: a linear pass
        codes = device_codes[mine]
        present = np.unique(codes)
        devices = []
        if len(present) > 1:
            # Sorted by name, a missing device last and labelled "nan" (as pandas' groupby has it).
            named = []
            for code in present:
                label = device_labels[code]
                missing = label is None or label != label
                named.append((missing, "nan" if missing else str(label), np.flatnonzero(codes == code)))
            devices = [(label, positions) for _, label, positions in sorted(named, key=lambda n: n[:2])]
        out[name] = Track(t_all[mine], y_all[mine], valid_all[mine], outside_all[mine], devices)
    return out


ALL_TIME = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)


def _series(frame, sensor: str, origin_us: int) -> list[tuple[str | None, np.ndarray, np.ndarray]]:
    """Per device, x in seconds since ``origin_us`` and y values, in time order (see :class:`Track`)."""
    return tracks(frame, [sensor])[sensor].series(*ALL_TIME, origin_us)


def _us(instant: datetime) -> int:
    return int(instant.timestamp() * 1_000_000)


def day_ticks(day: date, tz: ZoneInfo, every_hours: int = 3) -> list[tuple[float, str]]:
    """Ticks at local wall-clock hours divisible by ``every_hours``, positioned in seconds since midnight."""
    start, end = day_bounds(day, tz)
    ticks = []
    for slot in hour_slots(day, tz):
        wall = slot.start.astimezone(tz)
        if wall.hour % every_hours == 0 and wall.minute == 0 and not slot.stamp.endswith("_2"):
            ticks.append(((slot.start - start).total_seconds(), wall.strftime("%H:%M")))
    ticks.append(((end - start).total_seconds(), "24:00"))
    return ticks


def day_clock_change(day: date, tz: ZoneInfo) -> tuple[float, str] | None:
    """``(seconds since local midnight, text)`` of the day's clock change (DST), or None."""
    start, end = day_bounds(day, tz)
    changes = clock_changes(start, end, tz)
    return ((changes[0].instant - start).total_seconds(), changes[0].text) if changes else None


def hour_axis(slot, tz: ZoneInfo) -> tuple[list[tuple[float, str]], str]:
    """Ticks every 10 minutes (seconds since the slot's start, local label) and the slot's period text.

    Labels come from UTC instants: wall-clock arithmetic would label the end of 01:00 PDT on a fall-back
    day "02:00", when it is 01:00 PST.
    """
    span = (slot.end - slot.start).total_seconds()
    ticks = [(m * 60.0, (slot.start + timedelta(minutes=m)).astimezone(tz).strftime("%H:%M"))
             for m in range(0, 61, 10) if m * 60.0 <= span]
    first, last = slot.start.astimezone(tz), slot.end.astimezone(tz)
    if first.tzname() == last.tzname():
        return ticks, f"{first:%H:%M}–{last:%H:%M} {first.tzname()}"
    return ticks, f"{first:%H:%M} {first.tzname()}–{last:%H:%M} {last.tzname()}"


def render_day(
    frame,
    day: date,
    tz: ZoneInfo,
    sensors: list[Sensor],
    daily_paths: dict[str, str],
    hourly_paths: dict[tuple[str, str], str],
) -> list[ChartMeta]:
    """Draw the daily chart of each sensor in ``daily_paths`` and each ``(sensor, stamp)`` hourly chart.

    ``frame`` holds the day's readings (pandas, columns as in the extract).
    """
    chart = line_chart()
    start, end = day_bounds(day, tz)
    zone_name = zone_abbreviations(start, end, tz)
    metas: list[ChartMeta] = []
    by_name = {s.name: s for s in sensors}
    wanted = dict.fromkeys([*daily_paths, *(name for name, _ in hourly_paths)])
    by_sensor = tracks(frame, wanted, {s.name: s.validity for s in sensors})
    slots = {s.stamp: s for s in hour_slots(day, tz)}
    change = day_clock_change(day, tz)
    for sensor_name, path in daily_paths.items():
        sensor = by_name[sensor_name]
        began = time.perf_counter()
        track = by_sensor[sensor_name]
        series = track.series(_us(start), _us(end), _us(start))
        points = chart.draw(
            series,
            (0.0, (end - start).total_seconds()),
            day_ticks(day, tz),
            f"Local time ({zone_name})",
            sensor.axis_label,
            f"{sensor.display_name} · {day.isoformat()} · {tz.key}",
            change,
        )
        meta = ChartMeta(Path(path).name, sensor_name, "daily", day.isoformat(), points,
                         iso_local(start, tz), iso_local(end, tz), 0.0, *track.counts(_us(start), _us(end)))
        save_png(chart.figure, path, meta)
        meta.processing_time = round(time.perf_counter() - began, 4)
        metas.append(meta)
    for (sensor_name, stamp), path in hourly_paths.items():
        sensor = by_name[sensor_name]
        slot = slots[stamp]
        began = time.perf_counter()
        track = by_sensor[sensor_name]
        series = track.series(_us(slot.start), _us(slot.end), _us(slot.start))
        local = slot.start.astimezone(tz)
        span = (slot.end - slot.start).total_seconds()
        ticks, period = hour_axis(slot, tz)
        points = chart.draw(
            series,
            (0.0, span),
            ticks,
            f"Local time ({local.tzname()})",
            sensor.axis_label,
            f"{sensor.display_name} · {day.isoformat()} {period} · {tz.key}",
        )
        meta = ChartMeta(Path(path).name, sensor_name, "hourly", stamp, points,
                         iso_local(slot.start, tz), iso_local(slot.end, tz), 0.0,
                         *track.counts(_us(slot.start), _us(slot.end)))
        save_png(chart.figure, path, meta)
        meta.processing_time = round(time.perf_counter() - began, 4)
        metas.append(meta)
    return metas


# ---------------------------------------------------------------------------------------------------------
# Cumulative heatmap
# ---------------------------------------------------------------------------------------------------------


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


class Heatmap:
    """One reusable figure for the cumulative day × hour heatmap."""

    # Margins in inches, so that the title and the x label fit whatever the number of rows.
    TOP_IN, BOTTOM_IN = 0.45, 0.65

    def __init__(self, rows: int) -> None:
        apply_theme()
        height = max(HEIGHT_IN, 1.6 + 0.16 * rows)
        self.figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
        FigureCanvasAgg(self.figure)
        bottom, top = self.BOTTOM_IN / height, self.TOP_IN / height
        self.ax = self.figure.add_axes((0.12, bottom, 0.74, 1 - bottom - top))
        cax = self.figure.add_axes((0.88, bottom, 0.02, 1 - bottom - top))
        cmap = matplotlib.colormaps[HEATMAP_CMAP].with_extremes(bad="0.88")
        self.image = self.ax.imshow(np.full((rows, 24), np.nan), aspect="auto", cmap=cmap,
                                    interpolation="nearest", extent=(-0.5, 23.5, rows - 0.5, -0.5))
        self.colorbar = self.figure.colorbar(self.image, cax=cax)
        self.ax.grid(False)
        self.ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
        self.no_data = self.ax.text(11.5, (rows - 1) / 2, NO_DATA, ha="center", va="center",
                                    fontsize=16, color="0.45")
        # Grey cells need a word: an hour without readings (or 02:00 on a spring-forward day).
        self.missing_note = self.figure.text(0.88, 0.25 / height, "grey: no readings", ha="left", va="center",
                                             fontsize="x-small", color="0.35")

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
        self.ax.set_yticks(positions, [days[i].isoformat() for i in positions])
        self.ax.set_xlabel(xlabel)
        self.ax.set_title(title, y=1.0, pad=6.0)


def window_text(days: list[date]) -> str:
    """``2025-10-05 to 2025-11-03``, or the one date of a one-day window."""
    return days[0].isoformat() if len(days) == 1 else f"{days[0].isoformat()} to {days[-1].isoformat()}"


def render_cumulative(
    hourly, day: date, tz: ZoneInfo, window_days: int, sensors: list[Sensor], paths: dict[str, str]
) -> list[ChartMeta]:
    """Draw, per sensor in ``paths``, the heatmap of hourly means over the ``window_days`` ending on ``day``."""
    days = cumulative_window(day, window_days)
    start, _ = day_bounds(days[0], tz)
    _, end = day_bounds(day, tz)
    heatmap = heatmap_of(len(days))
    period = window_text(days)
    by_name = {s.name: s for s in sensors}
    metas = []
    for sensor_name, path in paths.items():
        sensor = by_name[sensor_name]
        began = time.perf_counter()
        matrix, points = hour_matrix(hourly, sensor_name, days)
        heatmap.draw(
            matrix,
            days,
            sensor,
            f"{sensor.display_name} · hourly means · {period} · {tz.key}",
            f"Local hour ({zone_abbreviations(start, end, tz)})",
        )
        meta = ChartMeta(Path(path).name, sensor_name, "cumulative", day.isoformat(), points,
                         iso_local(start, tz), iso_local(end, tz))
        save_png(heatmap.figure, path, meta)
        meta.processing_time = round(time.perf_counter() - began, 4)
        metas.append(meta)
    return metas


