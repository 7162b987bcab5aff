"""A day's daily and hourly charts, a window's heatmaps: what the render jobs call.

Each kind of chart keeps one figure per process (linechart.LineChart, heatmap.Heatmap) and updates its
artists chart after chart. Every chart gets a digest of its inputs before it is drawn; with a chart cache
(chartcache.ChartCache: the cron window), a chart whose digest is there is copied instead of drawn.
Either way the bytes are those a fresh figure would give (tests/test_charts.py checks both).
"""

from __future__ import annotations

import functools
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

import numpy as np

from . import atomic
from .chartbase import DPI, HEIGHT_IN, NO_DATA, WIDTH_IN, ChartMeta, Sensor, sensors_from_config
from .chartcache import ChartCache, digest
from .heatmap import Heatmap, hour_matrix, window_text
from .linechart import LineChart, _series, day_clock_change, day_ticks, hour_axis, readings_shown, tracks, us
from .tables import Validity
from .timegrid import cumulative_window, day_bounds, hour_slots, iso_local, zone_abbreviations

__all__ = ["DPI", "HEIGHT_IN", "NO_DATA", "WIDTH_IN", "ChartMeta", "Heatmap", "LineChart", "Sensor", "_series",
           "daily_axis", "heatmap_of", "hourly_axis", "line_chart", "render_cumulative", "render_day",
           "sensors_from_config", "warm_day", "warm_up", "warm_up_steps"]


@functools.lru_cache(maxsize=1)
def line_chart() -> LineChart:
    """This process's line chart: every call of render_day draws on it (draw() resets all it sets)."""
    return LineChart()


@functools.lru_cache(maxsize=2)
def heatmap_of(rows: int) -> Heatmap:
    """This process's heatmap figure for windows of ``rows`` days."""
    return Heatmap(rows)


def warm_up_steps(window_days: int = 30) -> list[Callable[[], None]]:
    """Build this process's figures and draw each once, in memory, so that the next chart starts warm: as
    steps of one chart each (~0.1 s), which the warm job server runs while no client waits.

    For a process that forks jobs (sensorcharts.warm): a first chart costs more than the next ones (figure
    and tick artists, fonts, text layout and glyph caches, the digest of the drawing code). Every draw sets
    all it shows, so what is drawn here never reaches a later chart (tests/test_charts.py checks it). The
    text layouts and glyph bitmaps it leaves are what every forked job starts with (aggcanvas.render_font).
    """
    meta = ChartMeta("warm-up.png", "warm-up", "daily", "1970-01-01", 0, "", "")
    x = np.linspace(0.0, 3600.0, 61)

    def hour_chart(hour: int) -> None:  # the digits of every hour's tick labels, at the places they take
        ticks = [(m * 60.0, f"{(hour + m // 60) % 24:02d}:{m % 60:02d}") for m in range(0, 61, 10)]
        chart = line_chart()
        chart.draw([(None, x, np.sin(x / 600.0) + hour)], (0.0, 3600.0), ticks, "Local time (UTC)",
                   "Warm-up (°C)", f"Warm-up · 1970-01-01 {hour:02d}:00–{hour:02d}:59 UTC · Etc/UTC")
        chart.render(meta)

    def heatmap() -> None:
        days = [date(1970, 1, 1) + timedelta(days=i) for i in range(window_days)]
        figure = heatmap_of(window_days)
        figure.draw(np.arange(window_days * 24, dtype=float).reshape(window_days, 24), days,
                    Sensor("warm-up", "Warm-up", "", Validity()), "warm-up", "Local hour (UTC)")
        figure.render(meta)

    return [*(functools.partial(hour_chart, hour) for hour in range(24)), heatmap, digest]


def warm_up(window_days: int = 30) -> None:
    """All of :func:`warm_up_steps` at once."""
    for step in warm_up_steps(window_days):
        step()


def daily_axis(day: date, tz: ZoneInfo) -> tuple:
    """The time axis of ``day``'s daily charts: ``(xlim, ticks, xlabel)``."""
    start, end = day_bounds(day, tz)
    xlabel = f"Local time ({zone_abbreviations(start, end, tz)})"
    return (0.0, (end - start).total_seconds()), day_ticks(day, tz), xlabel


def hourly_axis(slot, tz: ZoneInfo) -> tuple[tuple, str]:
    """The time axis ``(xlim, ticks, xlabel)`` of hour ``slot``'s charts, and the hour's period text."""
    ticks, period = hour_axis(slot, tz)
    xlabel = f"Local time ({slot.start.astimezone(tz).tzname()})"
    return ((0.0, (slot.end - slot.start).total_seconds()), ticks, xlabel), period


def warm_day(day: date, tz: ZoneInfo) -> None:
    """Keep the time axes of ``day``'s charts drawn in this process's line chart, for processes forked from
    it later: the warm job server calls it after handing a day's render job to its child, so that the jobs
    of the following days (the same axes, unless a clock change comes between) start with them drawn
    (0.2-0.3 s of each job's ~3 s of CPU). The axes are backgrounds only, so nothing of a day reaches another
    day's charts."""
    line_chart().keep_time_axes([daily_axis(day, tz), *(hourly_axis(slot, tz)[0] for slot in hour_slots(day, tz))])


def _write_chart(path: str, meta: ChartMeta, inputs: tuple, cache: ChartCache | None,
                 draw: Callable[[], bytes], began: float) -> ChartMeta:
    """Write the chart of ``inputs`` (what ``draw`` draws) to ``path``: copied from ``cache`` when it holds
    the bytes of the same inputs and code, else drawn. Completes ``meta``."""
    meta.inputs_digest = digest(meta.png_text(), inputs)
    data = cache.get(meta.inputs_digest) if cache is not None else None
    meta.drawn = data is None
    atomic.write_bytes(path, draw() if data is None else data)
    if cache is not None:
        cache.put(meta.inputs_digest, path)
    meta.processing_time = round(time.perf_counter() - began, 6)
    return meta


def render_day(
    frame,
    day: date,
    tz: ZoneInfo,
    sensors: list[Sensor],
    daily_paths: dict[str, str],
    hourly_paths: dict[tuple[str, str], str],
    cache: ChartCache | None = None,
) -> list[ChartMeta]:
    """Draw the daily chart of each sensor in ``daily_paths`` and each ``(sensor, stamp)`` hourly chart.

    ``frame`` holds the day's readings (pandas, columns as in the extract). ``cache``: copy the charts
    whose inputs it holds, and keep the others there (see chartcache).
    """
    chart = line_chart()
    start, end = day_bounds(day, tz)
    by_name = {s.name: s for s in sensors}
    wanted = dict.fromkeys([*daily_paths, *(name for name, _ in hourly_paths)])
    by_sensor = tracks(frame, wanted, {s.name: s.validity for s in sensors})
    slots = {s.stamp: s for s in hour_slots(day, tz)}
    planned = []  # (path, sensor, interval, stamp, period [lo, hi), time axis, title, clock change)
    day_axis, day_change = daily_axis(day, tz), day_clock_change(day, tz)
    for sensor_name, path in daily_paths.items():
        sensor = by_name[sensor_name]
        title = f"{sensor.display_name} · {day.isoformat()} · {tz.key}"
        planned.append((path, sensor, "daily", day.isoformat(), start, end, day_axis, title, day_change))
    hour_axes = {stamp: hourly_axis(slot, tz) for stamp, slot in slots.items()}  # shared by the sensors
    for (sensor_name, stamp), path in hourly_paths.items():
        sensor, slot = by_name[sensor_name], slots[stamp]
        axis, period = hour_axes[stamp]
        title = f"{sensor.display_name} · {day.isoformat()} {period} · {tz.key}"
        planned.append((path, sensor, "hourly", stamp, slot.start, slot.end, axis, title, None))
    metas = []
    for path, sensor, interval, stamp, lo, hi, (xlim, ticks, xlabel), title, change in planned:
        began = time.perf_counter()
        track = by_sensor[sensor.name]
        series = track.series(us(lo), us(hi), us(lo))
        meta = ChartMeta(Path(path).name, sensor.name, interval, stamp, readings_shown(series),
                         iso_local(lo, tz), iso_local(hi, tz), 0.0, *track.counts(us(lo), us(hi)))
        inputs = ("line", series, xlim, ticks, xlabel, sensor.axis_label, title, change)

        def draw(meta=meta, inputs=inputs):
            chart.draw(*inputs[1:])
            return chart.render(meta)

        metas.append(_write_chart(path, meta, inputs, cache, draw, began))
    if cache is not None:
        cache.prune()
    return metas


def render_cumulative(
    hourly, day: date, tz: ZoneInfo, window_days: int, sensors: list[Sensor], paths: dict[str, str],
    cache: ChartCache | None = None,
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
        meta = ChartMeta(Path(path).name, sensor_name, "cumulative", day.isoformat(), points,
                         iso_local(start, tz), iso_local(end, tz))
        inputs = ("heatmap", matrix, [d.isoformat() for d in days], sensor.axis_label,
                  f"{sensor.display_name} · hourly means · {period} · {tz.key}",
                  f"Local hour ({zone_abbreviations(start, end, tz)})")

        def draw(meta=meta, matrix=matrix, sensor=sensor, inputs=inputs):
            heatmap.draw(matrix, days, sensor, *inputs[4:])
            return heatmap.render(meta)

        metas.append(_write_chart(path, meta, inputs, cache, draw, began))
    if cache is not None:
        cache.prune()
    return metas

