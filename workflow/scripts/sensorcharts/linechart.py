"""Daily and hourly line charts: the series drawn (gaps, dense days), the reusable figure, and the time axes.

A job draws many charts, so it keeps one figure and updates its artists per chart instead of building a new
figure (the costly part of a naive ``plt.figure(); sns.lineplot(); savefig()``). X positions are computed
from UTC instants and the ticks placed at local wall-clock hours, so DST days are drawn exactly (23 or 25
hours wide) without relying on matplotlib's date locators.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import seaborn as sns

from .aggcanvas import Layers
from .chartbase import DPI, HEIGHT_IN, NO_DATA, THEME, WIDTH_IN, ChartMeta, apply_theme, new_figure, png_bytes
from .timegrid import clock_changes, day_bounds, hour_slots

GAP_FACTOR = 5  # a gap is a step longer than this many typical sampling intervals
MIN_GAP_S = 120.0  # … and never shorter than two minutes

Series = list[tuple[str | None, np.ndarray, np.ndarray]]  # (device label or None, x in seconds, y) per line


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


def readings_shown(series: Series) -> int:
    """The readings a chart of ``series`` shows: its finite values, before decimation."""
    return sum(int(np.isfinite(y).sum()) for _, _, y in series)


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
# The figure
# ---------------------------------------------------------------------------------------------------------


class LineChart:
    """One reusable figure for time-series charts.

    The figure and axes backgrounds and the time axis (grid, tick labels, axis label) are drawn before
    anything else and are the same for every chart with the same x range, ticks and x label: the three
    sensors' charts of an hour, every daily chart of a zone's ordinary days. ``render`` draws them once per
    such key (aggcanvas.Layers).
    """

    def __init__(self) -> None:
        apply_theme()
        self.figure = new_figure(WIDTH_IN, HEIGHT_IN)
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
        # Room for the time axes of a day in each of a zone's two offsets and of its clock-change days.
        self.layers = Layers(self.figure, [self.figure.patch, self.ax.patch, self.ax.xaxis], keep=56)
        self.time_axis = None  # what the time axis shows now: the key of its background in self.layers

    def _line(self, i: int):
        while len(self.lines) <= i:
            (line,) = self.ax.plot([], [], lw=1.2, color=self.palette[len(self.lines) % len(self.palette)])
            self.lines.append(line)
        return self.lines[i]

    def draw(
        self,
        series: Series,
        xlim: tuple[float, float],
        ticks: list[tuple[float, str]],
        xlabel: str,
        ylabel: str,
        title: str,
        clock_change: tuple[float, str] | None = None,
    ) -> int:
        """Set the artists to show ``series`` of ``(label, x, y)``; return the readings shown (see readings_shown).

        ``clock_change``: ``(x, text)`` of a DST change inside the period, marked by a dashed line.
        """
        ys = []
        for i, (label, x, y) in enumerate(series):
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
        self._set_time_axis(xlim, ticks, xlabel)
        self.ax.set_ylabel(ylabel)
        # A fixed title position: matplotlib would otherwise measure every tick label to place it (~5 ms).
        self.ax.set_title(title, y=1.0, pad=6.0)
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        if sum(1 for label, _, _ in series if label is not None) > 1:
            self.ax.legend(loc="upper right", fontsize="small", title="device")
        return readings_shown(series)

    @staticmethod
    def _axis_key(xlim: tuple[float, float], ticks: list[tuple[float, str]], xlabel: str) -> tuple:
        return tuple(xlim), tuple(ticks), xlabel

    def _set_time_axis(self, xlim: tuple[float, float], ticks: list[tuple[float, str]], xlabel: str) -> None:
        self.ax.set_xlim(*xlim)
        self.ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
        self.ax.set_xlabel(xlabel)
        self.time_axis = self._axis_key(xlim, ticks, xlabel)

    def render(self, meta: ChartMeta) -> bytes:
        """The chart as ``draw`` left it, as PNG bytes."""
        self.layers.draw(self.time_axis)
        return png_bytes(self.figure, meta)

    def keep_time_axes(self, axes: list[tuple[tuple[float, float], list[tuple[float, str]], str]]) -> None:
        """Draw and keep the background of each ``(xlim, ticks, xlabel)`` not kept yet, for charts drawn
        later by this process or by its forks. The next ``draw`` sets everything again."""
        for xlim, ticks, xlabel in axes:
            if self._axis_key(xlim, ticks, xlabel) not in self.layers.regions:
                self._set_time_axis(xlim, ticks, xlabel)
                self.layers.keep_background(self.time_axis)


# ---------------------------------------------------------------------------------------------------------
# Readings per sensor, cut per chart
# ---------------------------------------------------------------------------------------------------------


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

    def series(self, lo_us: int, hi_us: int, origin_us: int) -> Series:
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


def _one_value(column) -> bool:
    """Whether ``column`` (pandas strings, as extracts read back) holds one value throughout and none missing: a
    frame of one device, the usual day, then needs no sensor's devices factorized (~2 ms a sensor on a day of a
    reading a second). False for other dtypes, which are factorized as before."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(column.dtype, pd.StringDtype):
        return False
    values = pa.array(column)
    return len(values) > 0 and values.null_count == 0 and pc.all(pc.equal(values, values[0])).as_py()


def tracks(frame, names, validity: dict | None = None) -> dict[str, Track]:
    """A :class:`Track` per sensor in ``names``, from a frame of readings (columns as in the extract).

    Only the rows of ``names`` are looked at past finding them: comparing or converting pandas strings row by
    row costs more than drawing on a dense day, so each sensor's rows are found with one vectorized
    comparison, and device names are factorized (integer codes) within them when the frame has several.
    """
    import pandas as pd

    from .tables import Validity

    if "valid" in frame.columns:  # marked already (tables.mark_validity)
        marked = frame["valid"].to_numpy(dtype=bool), frame["out_of_range"].to_numpy(dtype=bool)
    else:
        marked = None
    t_all = frame["recorded_at"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    y_all = frame["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    several_devices = "device" in frame.columns and not _one_value(frame["device"])
    out = {}
    for name in names:
        mine = np.flatnonzero((frame["sensor"] == name).to_numpy(dtype=bool, na_value=False))
        mine = mine[np.argsort(t_all[mine], kind="stable")]  # extracts are in time order: a linear pass
        y = y_all[mine]
        if marked is not None:
            valid, outside = marked[0][mine], marked[1][mine]
        else:
            valid, outside = (validity or {}).get(name, Validity()).masks(y)
        devices = []
        if several_devices and len(mine):
            codes, labels = pd.factorize(frame["device"].take(mine), use_na_sentinel=False)
            if len(labels) > 1:
                # Sorted by name, a missing device last and labelled "nan" (as pandas' groupby has it).
                named = []
                for code, label in enumerate(labels):
                    missing = label is None or label != label
                    named.append((missing, "nan" if missing else str(label), np.flatnonzero(codes == code)))
                devices = [(label, positions) for _, label, positions in sorted(named, key=lambda n: n[:2])]
        out[name] = Track(t_all[mine], y, valid, outside, devices)
    return out


ALL_TIME = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)


def _series(frame, sensor: str, origin_us: int) -> Series:
    """Per device, x in seconds since ``origin_us`` and y values, in time order (see :class:`Track`)."""
    return tracks(frame, [sensor])[sensor].series(*ALL_TIME, origin_us)


def us(instant: datetime) -> int:
    """Microseconds since the epoch, as the tracks' times."""
    return int(instant.timestamp() * 1_000_000)


# ---------------------------------------------------------------------------------------------------------
# Time axes
# ---------------------------------------------------------------------------------------------------------


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
