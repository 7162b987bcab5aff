"""Charts: series preparation, the drawn artists, chart metadata, and deterministic PNG files."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import utc
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from sensorcharts import chartcache, linechart, png
from sensorcharts.chartbase import NO_DATA, ChartMeta, Sensor
from sensorcharts.chartcache import ChartCache
from sensorcharts.charts import heatmap_of, line_chart, render_cumulative, render_day, warm_day, warm_up
from sensorcharts.database import readings_schema
from sensorcharts.heatmap import Heatmap, hour_matrix, window_text
from sensorcharts.linechart import LineChart, break_gaps, day_clock_change, day_ticks, decimate, hour_axis
from sensorcharts.tables import aggregate
from sensorcharts.timegrid import day_bounds, hour_slots, zone

LA = zone("America/Los_Angeles")
FALL = date(2025, 11, 2)
SENSORS = [Sensor("temperature", "Temperature", "°C"), Sensor("humidity", "Humidity", "%")]


def readings_frame(rows, with_device=False) -> pd.DataFrame:
    """Rows ``(utc datetime, sensor, value[, device])`` as the extract's Parquet reads back into pandas."""
    schema = readings_schema(with_device)
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(columns, schema)], schema=schema)
    return table.to_pandas()


def minute_rows(day, tz, sensors=("temperature", "humidity"), every_minutes=1, missing_every=17):
    """A reading every ``every_minutes`` over the local day; every ``missing_every``-th has no value."""
    start, end = day_bounds(day, tz)
    rows, i = [], 0
    t = start
    while t < end:
        for k, sensor in enumerate(sensors):
            value = None if i % missing_every == 0 else 10.0 * k + np.sin(i / 60.0)
            rows.append((t, sensor, value))
        i += 1
        t += timedelta(minutes=every_minutes)
    return rows


def valid_count(rows, sensor, lo=None, hi=None):
    return sum(
        1 for t, s, v, *_ in rows if s == sensor and v is not None and (lo is None or lo <= t < hi)
    )


def png_paths(root: Path, day: date, sensors, stamps):
    daily = {s: str(root / s / "daily" / f"{day.isoformat()}.png") for s in sensors}
    hourly = {(s, st): str(root / s / "hourly" / f"{st}.png") for s in sensors for st in stamps}
    return daily, hourly


# --- break_gaps -------------------------------------------------------------------------------------------


def test_break_gaps_inserts_nan_exactly_at_the_gap():
    x = np.array([0.0, 60, 120, 180, 1000, 1060, 1120])
    y = np.arange(7, dtype=float)
    bx, by = break_gaps(x, y)
    np.testing.assert_array_equal(bx, [0, 60, 120, 180, np.nan, 1000, 1060, 1120])
    np.testing.assert_array_equal(by, [0, 1, 2, 3, np.nan, 4, 5, 6])


@pytest.mark.parametrize(
    ("x", "nan_at"),
    [
        ([0, 60, 120, 180, 240], []),  # regular: nothing inserted
        ([0, 60, 120, 420, 480], []),  # a step of exactly 5 × median is not a gap
        ([0, 60, 120, 421, 481], [3]),  # just longer is
        ([0, 1, 2, 3, 103, 104], []),  # 1 s sampling: 100 s is under the two-minute floor
        ([0, 1, 2, 3, 124, 125], [4]),  # … 121 s is over it
        ([0, 60, 1000, 1060, 5000, 5060], [2, 5]),  # two gaps
        ([0.0], []),
        ([], []),
    ],
)
def test_break_gaps_cases(x, nan_at):
    x = np.array(x, dtype=float)
    y = x * 2
    bx, by = break_gaps(x, y)
    assert list(np.flatnonzero(np.isnan(bx))) == nan_at
    assert list(np.flatnonzero(np.isnan(by))) == nan_at
    np.testing.assert_array_equal(bx[~np.isnan(bx)], x)  # the readings themselves are unchanged
    np.testing.assert_array_equal(by[~np.isnan(by)], y)


# --- decimate ---------------------------------------------------------------------------------------------


def _columns_of(x, x0, x1, columns):
    return np.clip(((x - x0) / (x1 - x0) * columns).astype(int), 0, columns - 1)


@pytest.mark.parametrize("with_gaps", [False, True])
def test_decimate_keeps_each_columns_min_and_max(with_gaps):
    rng = np.random.default_rng(7)
    n, columns, x0, x1 = 20_000, 100, 0.0, 86_400.0
    x = np.sort(rng.uniform(x0, x1, n))
    y = np.cumsum(rng.normal(0, 1, n))
    y[123] = 500.0  # a spike
    y[9_876] = -500.0
    if with_gaps:
        keep = ~(((x > 10_000) & (x < 20_000)) | ((x > 50_000) & (x < 50_500)))
        x, y = break_gaps(x[keep], y[keep])
    gaps = int(np.isnan(y).sum())
    assert gaps == (2 if with_gaps else 0)

    dx, dy = decimate(x, y, x0, x1, columns)

    assert len(dx) == len(dy) <= 4 * columns + gaps
    assert len(dx) < len(x)
    finite = ~np.isnan(dy)
    assert int((~finite).sum()) == gaps  # each gap is still broken
    assert np.nanmax(dy) == 500.0 and np.nanmin(dy) == -500.0
    assert np.all(np.diff(dx[finite]) >= 0)  # still in time order
    # Every kept vertex is an original reading.
    originals = set(zip(x[~np.isnan(y)].tolist(), y[~np.isnan(y)].tolist()))
    assert set(zip(dx[finite].tolist(), dy[finite].tolist())) <= originals
    # Per pixel column, the drawn extent equals the full series' extent.
    valid = ~np.isnan(y)
    col_in, col_out = _columns_of(x[valid], x0, x1, columns), _columns_of(dx[finite], x0, x1, columns)
    for c in np.unique(col_in):
        assert dy[finite][col_out == c].min() == y[valid][col_in == c].min()
        assert dy[finite][col_out == c].max() == y[valid][col_in == c].max()


def test_decimate_leaves_short_series_alone():
    x = np.arange(400, dtype=float)
    y = np.sin(x)
    dx, dy = decimate(x, y, 0.0, 400.0, 100)
    assert dx is x and dy is y


# --- LineChart ----------------------------------------------------------------------------------------------


def _draw(chart, series, xlim=(0.0, 86_400.0)):
    return chart.draw(series, xlim, [(0.0, "00:00"), (xlim[1], "24:00")], "Local time", "T (°C)", "title")


def test_empty_chart_shows_no_data():
    chart = LineChart()
    assert _draw(chart, []) == 0
    assert chart.no_data.get_visible()
    assert chart.no_data.get_text() == NO_DATA
    # A series of only missing values is no data either.
    assert _draw(chart, [(None, np.array([0.0, 60.0]), np.array([np.nan, np.nan]))]) == 0
    assert chart.no_data.get_visible()


def test_chart_with_data_hides_no_data_and_counts_readings():
    chart = LineChart()
    x = np.arange(0, 86_400, 10, dtype=float)  # 8640 readings, more than the pixel columns hold
    y = np.cos(x / 3600)
    y[::100] = np.nan
    points = _draw(chart, [(None, x, y)])
    assert points == int(np.isfinite(y).sum())
    assert not chart.no_data.get_visible()
    (line,) = [ln for ln in chart.lines if ln.get_visible()]
    assert len(line.get_xdata()) <= 4 * chart.columns
    assert chart.ax.get_xlim() == (0.0, 86_400.0)
    lo, hi = chart.ax.get_ylim()
    assert lo < np.nanmin(y) and hi > np.nanmax(y)
    # Drawing an empty chart next on the same figure hides the old line and shows "No data" again.
    _draw(chart, [])
    assert chart.no_data.get_visible()
    assert not any(ln.get_visible() for ln in chart.lines)


def test_chart_legend_only_for_several_devices():
    chart = LineChart()
    x = np.arange(0, 3600, 60, dtype=float)
    _draw(chart, [("a", x, np.sin(x)), ("b", x, np.cos(x))], (0.0, 3600.0))
    legend = chart.ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    _draw(chart, [(None, x, np.sin(x))], (0.0, 3600.0))
    assert chart.ax.get_legend() is None
    assert sum(ln.get_visible() for ln in chart.lines) == 1


def test_no_data_chart_shows_no_value_scale():
    chart = LineChart()
    _draw(chart, [])
    assert not chart.ax.yaxis.get_tick_params()["labelleft"]  # a 0-1 scale would mean nothing
    x = np.arange(0, 3600, 60, dtype=float)
    _draw(chart, [(None, x, np.sin(x))], (0.0, 3600.0))
    assert chart.ax.yaxis.get_tick_params()["labelleft"]


def test_clock_change_is_marked_and_cleared():
    chart = LineChart()
    mark = (3 * 3600.0, "clocks back: 02:00 PDT → 01:00 PST")
    chart.draw([], (0.0, 90_000.0), day_ticks(FALL, LA), "Local time", "T", "title", mark)
    assert chart.change_line.get_visible() and list(chart.change_line.get_xdata()) == [3 * 3600.0] * 2
    assert chart.change_text.get_visible() and chart.change_text.get_text() == mark[1]
    _draw(chart, [])
    assert not chart.change_line.get_visible() and not chart.change_text.get_visible()


def test_clock_change_position_on_the_day_axis():
    # 02:00 PDT is the third hour of the day: two hours after midnight, whatever the wall clock shows next.
    assert day_clock_change(FALL, LA) == (2 * 3600.0, "clocks back: 02:00 PDT → 01:00 PST")
    assert day_clock_change(date(2025, 3, 9), LA) == (2 * 3600.0, "clocks forward: 02:00 PST → 03:00 PDT")
    assert day_clock_change(date(2025, 11, 3), LA) is None


def test_fall_back_day_is_25_hours_wide():
    start, end = day_bounds(FALL, LA)
    span = (end - start).total_seconds()
    assert span == 90_000
    ticks = day_ticks(FALL, LA)
    assert ticks[-1] == (90_000.0, "24:00")
    positions = dict((label, pos) for pos, label in ticks)
    assert positions["00:00"] == 0.0
    assert positions["03:00"] == 4 * 3600.0  # 01:00 happens twice, so 03:00 is four hours in
    assert positions["21:00"] == 22 * 3600.0
    chart = LineChart()
    chart.draw([], (0.0, span), ticks, "Local time", "T", "title")
    assert chart.ax.get_xlim() == (0.0, 90_000.0)
    assert [t.get_text() for t in chart.ax.get_xticklabels()] == [label for _, label in ticks]


# --- render_day -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fall_rows():
    return minute_rows(FALL, LA, every_minutes=2)


def test_render_day_writes_the_charts_asked_for(tmp_path, fall_rows):
    stamps = ["2025-11-02T01", "2025-11-02T01_2"]
    daily, hourly = png_paths(tmp_path, FALL, ["temperature", "humidity"], stamps)
    hourly = {k: v for k, v in hourly.items() if k[0] == "temperature"}
    metas = render_day(readings_frame(fall_rows), FALL, LA, SENSORS, daily, hourly)

    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(
        [
            "humidity/daily/2025-11-02.png",
            "temperature/daily/2025-11-02.png",
            "temperature/hourly/2025-11-02T01.png",
            "temperature/hourly/2025-11-02T01_2.png",
        ]
    )
    for path in written:
        with Image.open(tmp_path / path) as im:
            assert im.format == "PNG" and im.size == (1000, 400)
    assert [(m.sensor_type, m.interval, m.stamp) for m in metas] == [
        ("temperature", "daily", "2025-11-02"),
        ("humidity", "daily", "2025-11-02"),
        ("temperature", "hourly", "2025-11-02T01"),
        ("temperature", "hourly", "2025-11-02T01_2"),
    ]


def test_render_day_meta_values(tmp_path, fall_rows):
    daily, hourly = png_paths(tmp_path, FALL, ["temperature"], ["2025-11-02T01_2"])
    metas = {m.interval: m for m in render_day(readings_frame(fall_rows), FALL, LA, SENSORS, daily, hourly)}

    d = metas["daily"]
    assert d.filename == "2025-11-02.png"
    assert d.data_points == valid_count(fall_rows, "temperature")
    assert d.data_points < 750  # some readings have no value and are not counted
    assert d.start_time == "2025-11-02T00:00:00-07:00"
    assert d.end_time == "2025-11-03T00:00:00-08:00"

    h = metas["hourly"]
    assert h.filename == "2025-11-02T01_2.png"
    assert h.stamp == "2025-11-02T01_2"
    assert h.data_points == valid_count(fall_rows, "temperature", utc(2025, 11, 2, 9), utc(2025, 11, 2, 10))
    assert 0 < h.data_points <= 30
    assert h.start_time == "2025-11-02T01:00:00-08:00"
    assert h.end_time == "2025-11-02T02:00:00-08:00"
    assert h.processing_time >= 0


def test_png_text_chunks_carry_meta_but_no_software_or_time(tmp_path, fall_rows):
    daily, hourly = png_paths(tmp_path, FALL, ["temperature"], ["2025-11-02T01_2"])
    metas = render_day(readings_frame(fall_rows), FALL, LA, SENSORS, daily, hourly)
    for meta, path in zip(metas, [*daily.values(), *hourly.values()]):
        with Image.open(path) as im:
            text = dict(im.text)
        for key in ("sensor_type", "interval", "data_points", "start_time", "end_time", "filename"):
            assert text[key] == str(getattr(meta, key)), key
        assert "Software" not in text
        assert "processing_time" not in text
        assert not any("time" in k.lower() and k not in ("start_time", "end_time") for k in text)


def test_rendering_twice_gives_identical_bytes(tmp_path, fall_rows):
    frame = readings_frame(fall_rows)
    outputs = []
    for run in ("a", "b"):
        daily, hourly = png_paths(tmp_path / run, FALL, ["temperature", "humidity"], ["2025-11-02T01_2"])
        render_day(frame, FALL, LA, SENSORS, daily, hourly)
        outputs.append({p.relative_to(tmp_path / run): p.read_bytes() for p in (tmp_path / run).rglob("*.png")})
    assert len(outputs[0]) == 4
    assert outputs[0] == outputs[1]


def test_chart_bytes_do_not_depend_on_what_was_drawn_before(tmp_path, fall_rows):
    frame = readings_frame(fall_rows)
    both, _ = png_paths(tmp_path / "both", FALL, ["temperature", "humidity"], [])
    alone, _ = png_paths(tmp_path / "alone", FALL, ["humidity"], [])
    render_day(frame, FALL, LA, SENSORS, both, {})
    render_day(frame, FALL, LA, SENSORS, alone, {})
    assert Path(both["humidity"]).read_bytes() == Path(alone["humidity"]).read_bytes()


def test_warm_up_leaves_no_trace_in_later_charts(tmp_path, fall_rows):
    """The warm job server draws once before forking jobs (charts.warm_up), and keeps the time axes of the
    days its jobs draw (charts.warm_day): the charts its jobs then draw must be the bytes that fresh figures
    give, daily, hourly and heatmap alike."""
    frame = readings_frame(fall_rows)
    days = [date(2025, 11, 1), FALL]
    hourly_table = _hourly_of({days[0]: minute_rows(days[0], LA, every_minutes=20), days[1]: fall_rows})
    outputs = []
    for run in ("fresh", "warmed"):
        line_chart.cache_clear()
        heatmap_of.cache_clear()
        if run == "warmed":
            warm_up(window_days=2)
            warm_day(FALL, LA)  # what the warm server keeps after a day's job: the day's time axes
            kept = len(line_chart().layers.regions)
        daily, hourly = png_paths(tmp_path / run, FALL, ["temperature", "humidity"], ["2025-11-02T01_2"])
        render_day(frame, FALL, LA, SENSORS, daily, hourly)
        render_cumulative(hourly_table, FALL, LA, 2, SENSORS, {"humidity": str(tmp_path / run / "cumulative.png")})
        outputs.append({p.relative_to(tmp_path / run): p.read_bytes() for p in (tmp_path / run).rglob("*.png")})
        if run == "warmed":  # the day's axes were all kept: the job drew none of its own
            assert len(line_chart().layers.regions) == kept
    assert len(outputs[0]) == 5
    assert outputs[0] == outputs[1]


def test_empty_day_renders_with_zero_points(tmp_path):
    daily, hourly = png_paths(tmp_path, FALL, ["temperature"], ["2025-11-02T05"])
    metas = render_day(readings_frame([]), FALL, LA, SENSORS, daily, hourly)
    assert [m.data_points for m in metas] == [0, 0]
    assert all(Path(p).is_file() for p in [*daily.values(), *hourly.values()])


def test_device_series_counted_together(tmp_path):
    rows = [(t, s, v, "a") for t, s, v in minute_rows(FALL, LA, ("temperature",), every_minutes=10)]
    rows += [(t, s, v, "b") for t, s, v in minute_rows(FALL, LA, ("temperature",), every_minutes=15)]
    daily, _ = png_paths(tmp_path, FALL, ["temperature"], [])
    (meta,) = render_day(readings_frame(rows, with_device=True), FALL, LA, SENSORS, daily, {})
    assert meta.data_points == valid_count(rows, "temperature")


def test_tracks_split_a_sensor_by_device_only_when_it_has_several():
    t0 = utc(2025, 1, 15, 8)
    at = [t0 + timedelta(minutes=i) for i in range(6)]
    rows = [(at[i], "temperature", float(i), ("b", "a", None)[i % 3]) for i in range(6)]
    rows += [(at[i], "humidity", float(i), "b") for i in range(6)]
    found = linechart.tracks(readings_frame(rows, with_device=True), ["temperature", "humidity"])
    # Sorted by name, the missing device last as "nan"; each device's readings in time order.
    assert [(label, list(y)) for label, _, y in found["temperature"].devices] == [
        ("a", [1.0, 4.0]), ("b", [0.0, 3.0]), ("nan", [2.0, 5.0])]
    assert found["humidity"].devices == []  # one device: one line, no legend
    assert [label for label, _, _ in found["temperature"].series(*linechart.ALL_TIME, 0)] == ["a", "b", "nan"]
    one = [(t, s, v, "b") for t, s, v, _ in rows]
    assert linechart.tracks(readings_frame(one, with_device=True), ["temperature"])["temperature"].devices == []
    assert linechart._one_value(readings_frame(one, with_device=True)["device"])  # the frame's one device is seen
    unnamed = [(t, s, v, None) for t, s, v, _ in rows]
    assert linechart.tracks(readings_frame(unnamed, with_device=True), ["temperature"])["temperature"].devices == []
    some_unnamed = [(t, s, v, ("b", None)[i % 2]) for i, (t, s, v, _) in enumerate(one)]
    found = linechart.tracks(readings_frame(some_unnamed, with_device=True), ["temperature"])
    assert [label for label, _, _ in found["temperature"].devices] == ["b", "nan"]


# --- cumulative ---------------------------------------------------------------------------------------------


def _hourly_of(days_rows: dict[date, list]) -> pd.DataFrame:
    tables = [aggregate(readings_frame(rows), day, LA)[0] for day, rows in days_rows.items()]
    return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def test_render_cumulative_with_an_empty_day(tmp_path):
    days = [date(2025, 11, 1), FALL, date(2025, 11, 3)]
    hourly = _hourly_of(
        {
            days[0]: minute_rows(days[0], LA, every_minutes=20),
            days[1]: [],
            days[2]: minute_rows(days[2], LA, every_minutes=30),
        }
    )
    matrix, points = hour_matrix(hourly, "temperature", days)
    assert matrix.shape == (3, 24)
    assert np.isnan(matrix[1]).all()
    assert np.isfinite(matrix[0]).all() and np.isfinite(matrix[2]).all()
    expected = int(hourly.loc[hourly["sensor"] == "temperature", "count"].sum())
    assert points == expected

    paths = {s: str(tmp_path / s / "cumulative" / "2025-11-03.png") for s in ("temperature", "humidity")}
    metas = render_cumulative(hourly, days[-1], LA, 3, SENSORS, paths)
    assert [m.sensor_type for m in metas] == ["temperature", "humidity"]
    temp = metas[0]
    assert temp.data_points == expected
    assert temp.data_points == valid_count(minute_rows(days[0], LA, every_minutes=20), "temperature") + valid_count(
        minute_rows(days[2], LA, every_minutes=30), "temperature"
    )
    assert (temp.interval, temp.stamp, temp.filename) == ("cumulative", "2025-11-03", "2025-11-03.png")
    assert temp.start_time == "2025-11-01T00:00:00-07:00"
    assert temp.end_time == "2025-11-04T00:00:00-08:00"
    with Image.open(paths["temperature"]) as im:
        assert im.text["data_points"] == str(expected)
        assert im.text["interval"] == "cumulative"
        assert "Software" not in im.text


def test_hour_matrix_merges_repeated_hour_and_devices_weighted_by_count():
    hourly = pd.DataFrame(
        {
            "sensor": ["temperature"] * 4 + ["humidity"],
            "local_date": ["2025-11-02"] * 4 + ["2025-11-02"],
            "hour": ["2025-11-02T01", "2025-11-02T01_2", "2025-11-02T05", "2025-11-02T05", "2025-11-02T01"],
            "count": [1, 3, 2, 6, 100],
            "mean": [10.0, 2.0, 1.0, 5.0, 99.0],
        }
    )
    matrix, points = hour_matrix(hourly, "temperature", [FALL])
    assert matrix[0, 1] == pytest.approx((10 * 1 + 2 * 3) / 4)
    assert matrix[0, 5] == pytest.approx((1 * 2 + 5 * 6) / 8)
    assert np.isnan(matrix[0, [0, 2, 3, 4, *range(6, 24)]]).all()
    assert points == 12


def test_hour_matrix_ignores_days_outside_the_window_and_missing_sensors():
    hourly = pd.DataFrame(
        {
            "sensor": ["temperature", "temperature"],
            "local_date": ["2025-10-01", "2025-11-02"],
            "hour": ["2025-10-01T03", "2025-11-02T03"],
            "count": [5, 2],
            "mean": [1.0, 4.0],
        }
    )
    matrix, points = hour_matrix(hourly, "temperature", [FALL])
    assert matrix[0, 3] == 4.0 and points == 2
    matrix, points = hour_matrix(hourly, "pressure", [FALL])
    assert np.isnan(matrix).all() and points == 0


def test_spring_forward_day_has_no_hour_2_in_matrix():
    spring = date(2025, 3, 9)
    hourly = _hourly_of({spring: minute_rows(spring, LA, every_minutes=30)})
    matrix, _ = hour_matrix(hourly, "temperature", [spring])
    assert np.isnan(matrix[0, 2])
    assert np.isfinite(np.delete(matrix[0], 2)).all()
    assert len(hour_slots(spring, LA)) == 23


def test_heatmap_no_data():
    heatmap = Heatmap(3)
    days = [date(2025, 11, 1), FALL, date(2025, 11, 3)]
    heatmap.draw(np.full((3, 24), np.nan), days, SENSORS[0], "t", "x")
    assert heatmap.no_data.get_visible()
    assert not heatmap.colorbar.ax.get_visible()  # no data: no meaningless 0-1 colour scale
    assert not heatmap.missing_note.get_visible()
    heatmap.draw(np.arange(72, dtype=float).reshape(3, 24), days, SENSORS[0], "t", "x")
    assert not heatmap.no_data.get_visible()
    assert heatmap.colorbar.ax.get_visible()
    assert not heatmap.missing_note.get_visible()  # no grey cell to explain
    assert heatmap.image.get_clim() == (0.0, 71.0)
    partial = np.arange(72, dtype=float).reshape(3, 24)
    partial[1, 2] = np.nan
    heatmap.draw(partial, days, SENSORS[0], "t", "x")
    assert heatmap.missing_note.get_visible() and "no readings" in heatmap.missing_note.get_text()


@pytest.mark.parametrize("rows", [1, 7, 15, 30, 90])
def test_heatmap_labels_fit_in_the_figure(rows):
    heatmap = Heatmap(rows)
    days = [date(2025, 1, 1) + timedelta(days=i) for i in range(rows)]
    heatmap.draw(np.zeros((rows, 24)), days, SENSORS[0], "a title", "Local hour (PST)")
    heatmap.figure.canvas.draw()  # places the labels
    renderer = heatmap.figure.canvas.get_renderer()
    for artist in (heatmap.ax.title, heatmap.ax.xaxis.label, *heatmap.ax.get_yticklabels()):
        box = artist.get_window_extent(renderer)
        assert box.y0 >= 0 and box.y1 <= heatmap.figure.bbox.height, (rows, artist.get_text())


def test_window_text():
    assert window_text([FALL]) == "2025-11-02"
    assert window_text([FALL, date(2025, 11, 3)]) == "2025-11-02 to 2025-11-03"


def test_hour_axis_of_the_first_fall_back_hour_ends_at_one_pst():
    la = zone("America/Los_Angeles")
    slots = {s.stamp: s for s in hour_slots(date(2025, 11, 2), la)}
    ticks, period = hour_axis(slots["2025-11-02T01"], la)
    assert [label for _, label in ticks] == ["01:00", "01:10", "01:20", "01:30", "01:40", "01:50", "01:00"]
    assert period == "01:00 PDT–01:00 PST"
    ticks, period = hour_axis(slots["2025-11-02T01_2"], la)
    assert ticks[-1] == (3600.0, "02:00") and period == "01:00–02:00 PST"


# --- drawing from caches: the pixels plain matplotlib draws ------------------------------------------------


def plain_pixels(figure) -> np.ndarray:
    """The figure drawn by matplotlib's own Agg canvas (no text caches, no kept backgrounds), as RGB."""
    FigureCanvasAgg(figure)
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGB"
        return np.asarray(im).copy()


def line_chart_cases():
    """Inputs of LineChart.draw as a day's job meets them: hours of a fall-back day (ticks, titles and y
    ranges change from chart to chart, the x axis repeats across sensors), daily charts, no data, devices."""
    slots = hour_slots(FALL, LA)
    x = np.arange(0.0, 3600.0, 60.0)
    cases = []
    for i, slot in enumerate([*slots[:4], slots[12]]):
        ticks, period = hour_axis(slot, LA)
        for sensor, scale in (("Temperature (°C)", 1.0), ("Humidity (%)", 40.0)):
            y = scale * (np.sin(x / 500.0 + i) + i)
            cases.append(([(None, x, y)], (0.0, 3600.0), ticks, f"Local time ({slot.start.astimezone(LA):%Z})",
                          sensor, f"{sensor} · {FALL} {period} · America/Los_Angeles", None))
    day = np.arange(0.0, 90_000.0, 120.0)
    daily = ((0.0, 90_000.0), day_ticks(FALL, LA), "Local time (PDT/PST)")
    cases.append(([(None, day, np.cos(day / 9000.0))], *daily, "T (°C)", "daily", day_clock_change(FALL, LA)))
    cases.append(([], *daily, "T (°C)", "daily, no data", day_clock_change(FALL, LA)))
    cases.append(([("a", x, np.sin(x)), ("b", x, np.cos(x))], (0.0, 3600.0), hour_axis(slots[5], LA)[0],
                  "Local time (PST)", "T (°C)", "two devices", None))
    single = np.full(60, np.nan)
    single[30] = 4.0
    cases.append(([(None, x, single)], (0.0, 3600.0), hour_axis(slots[6], LA)[0], "Local time (PST)", "T (°C)",
                  "one reading: a dot", None))
    return cases


def test_line_charts_are_pixel_for_pixel_what_plain_matplotlib_draws():
    """LineChart.render draws text from caches and the time axis from a kept background (aggcanvas): each
    chart, drawn after the others on one figure, must be what matplotlib's own canvas draws of it."""
    chart = LineChart()
    meta = ChartMeta("x.png", "temperature", "hourly", "s", 0, "", "")
    rendered = []
    for case in line_chart_cases():
        chart.draw(*case)
        rendered.append(png_pixels(chart.render(meta)))
    for case, pixels in zip(line_chart_cases(), rendered):
        fresh = LineChart()
        fresh.draw(*case)
        np.testing.assert_array_equal(pixels, plain_pixels(fresh.figure), err_msg=case[5])
    assert len(chart.layers.regions) == 8  # the five hours' and the daily chart's x axes, kept


def test_a_forked_child_renders_glyphs_with_fonts_of_its_own():
    """The warm server's children are forks: a font of the parent reads glyphs through a file offset that
    every child shares, so two children rendering at once would read each other's bytes. A child keeps the
    parent's layouts and bitmaps, but renders a new glyph with a font it opened itself, and gets the
    parent's pixels."""
    import os

    from sensorcharts import aggcanvas

    chart = LineChart()
    meta = ChartMeta("x.png", "temperature", "hourly", "s", 0, "", "")
    case = line_chart_cases()[0]
    chart.draw(*case)
    before = png_pixels(chart.render(meta))
    fonts = {glyph[0] for glyphs in aggcanvas._layouts.values() for glyph in glyphs}
    parents = {font: aggcanvas.render_font(font) for font in fonts}
    assert parents
    pid = os.fork()
    if pid == 0:  # the child: render every glyph again, report through the exit status
        status = 1
        try:
            aggcanvas._glyphs.clear()
            chart.draw(*case)
            same = np.array_equal(png_pixels(chart.render(meta)), before)
            own = all(aggcanvas.render_font(font) is not parent for font, parent in parents.items())
            status = 0 if same and own and aggcanvas._glyphs else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child rendered with its parent's fonts (or other pixels)"


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")  # the CJK string: tofu, as matplotlib draws it
def test_text_is_measured_from_its_layout_as_matplotlib_measures_it():
    """Renderer measures a new string from the layout that draws it and its characters' own metrics instead
    of a second FreeType layout: the sizes must be matplotlib's, kerned pairs, spaces, digits, glyphs from a
    fallback font beside the first font's, resolutions and hinting included; strings whose glyphs are not
    their characters' own are measured as matplotlib measures them."""
    import random

    import matplotlib
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    from sensorcharts import aggcanvas

    random.seed(18)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,:;()-–—°%/_·−µ³"
    strings = ["Temperature (°C) · 2025-11-02 01:00 PDT–01:00 PST · America/Los_Angeles", "AVAWAY Te To Wa Yo",
               " ", "  x  ", "1013.5", "−0.5", "µg/m³", "Airflow fi fl ffi", "温度 (°C)", "e\u0301 café"]
    strings += ["".join(random.choice(alphabet) for _ in range(random.randint(1, 40))) for _ in range(200)]
    measured = 0
    # cmr10 lacks "°", "–", "µ" and more, which come from DejaVu Sans, its fallback, next to its own glyphs.
    for family, dpi, hinting in ((None, 100, "default"), (["cmr10", "DejaVu Sans"], 100, "default"),
                                 (None, 72, "default"), (None, 100, "no_hinting")):
        with matplotlib.rc_context({"text.hinting": hinting}):
            ours, theirs = aggcanvas.Renderer(1000, 400, dpi), RendererAgg(1000, 400, dpi)
            for size in ("small", 16.0):
                prop = FontProperties(family=family, size=size)
                for text in strings:
                    aggcanvas._metrics.clear()
                    measured += ours._measure(text, prop, aggcanvas.get_hinting_flag()) is not None
                    assert ours.get_text_width_height_descent(text, prop, False) == \
                        theirs.get_text_width_height_descent(text, prop, False), (family, dpi, hinting, size, text)
    assert measured >= 4 * 2 * 200  # the random strings at least: the layout's measure was the one compared


def test_heatmaps_are_pixel_for_pixel_what_plain_matplotlib_draws():
    days = [date(2025, 10, 31), date(2025, 11, 1), FALL]
    meta = ChartMeta("x.png", "temperature", "cumulative", "s", 0, "", "")
    matrices = [np.arange(72, dtype=float).reshape(3, 24), np.full((3, 24), np.nan)]
    matrices.append(matrices[0].copy())
    matrices[2][1, 2:5] = np.nan
    heatmap = Heatmap(3)
    rendered = []
    for i, matrix in enumerate(matrices):
        heatmap.draw(matrix, days, SENSORS[i % 2], f"title {i}", "Local hour (PDT/PST)")
        rendered.append(png_pixels(heatmap.render(meta)))
    for i, (matrix, pixels) in enumerate(zip(matrices, rendered)):
        fresh = Heatmap(3)
        fresh.draw(matrix, days, SENSORS[i % 2], f"title {i}", "Local hour (PDT/PST)")
        np.testing.assert_array_equal(pixels, plain_pixels(fresh.figure))


def test_png_holds_the_pixels_and_the_text():
    rgba = np.random.default_rng(3).integers(0, 256, (40, 70, 4), dtype=np.uint8)
    data = png.encode(rgba, {"sensor_type": "temperature", "Title": "x", "unit": "µ°C", "other": "ĉ €"}, 100)
    with Image.open(io.BytesIO(data)) as im:
        assert (im.mode, im.size) == ("RGB", (70, 40))
        np.testing.assert_array_equal(np.asarray(im), rgba[:, :, :3])
        assert im.text == {"sensor_type": "temperature", "Title": "x", "unit": "µ°C", "other": "ĉ €"}
        assert im.info["dpi"] == pytest.approx((100, 100), abs=0.01)
    assert png.encode(rgba, {"a": "b"}, 100) == png.encode(rgba.copy(), {"a": "b"}, 100)


# --- the chart cache: unchanged charts are copied, not drawn ------------------------------------------------


TODAY_NOON = utc(2025, 11, 2, 20)  # 12:00 PST on the fall-back day


def today_rows(until=TODAY_NOON):
    return [r for r in minute_rows(FALL, LA) if r[0] < until]


def render_today(frame, root: Path, cache: ChartCache | None):
    stamps = [s.stamp for s in hour_slots(FALL, LA, TODAY_NOON)]
    daily, hourly = png_paths(root, FALL, ["temperature", "humidity"], stamps)
    metas = render_day(frame, FALL, LA, SENSORS, daily, hourly, cache)
    files = {str(Path(p).relative_to(root)): Path(p).read_bytes() for p in [*daily.values(), *hourly.values()]}
    return {(m.sensor_type, m.stamp): m for m in metas}, files


def test_unchanged_charts_are_copied_and_identical_to_a_fresh_draw(tmp_path):
    cache = ChartCache.for_day("day", FALL, FALL, tmp_path / "cache")
    frame = readings_frame(today_rows())
    first, first_files = render_today(frame, tmp_path / "a", cache)
    assert all(m.drawn for m in first.values()) and len(first) == 2 * (1 + 14)
    again, again_files = render_today(frame, tmp_path / "b", ChartCache.for_day("day", FALL, FALL, tmp_path / "cache"))
    assert not any(m.drawn for m in again.values())
    assert again_files == first_files
    assert {k: m.inputs_digest for k, m in again.items()} == {k: m.inputs_digest for k, m in first.items()}
    assert [m.data_points for m in again.values()] == [m.data_points for m in first.values()]


def test_new_readings_redraw_only_the_charts_that_show_them(tmp_path):
    """A cron run: new readings in the current hour redraw that hour's and the daily chart of their sensor;
    a changed reading in an earlier hour redraws that hour. Every chart's bytes are a fresh draw's."""
    rows = today_rows()
    render_today(readings_frame(rows), tmp_path / "before", ChartCache.for_day("day", FALL, FALL, tmp_path / "c"))
    start_noon = utc(2025, 11, 2, 19)  # 11:00 PST: the current hour, T11
    rows = [r for r in rows if not (r[0] >= utc(2025, 11, 2, 19, 55) and r[1] == "temperature")]  # not yet in
    render_today(readings_frame(rows), tmp_path / "first", ChartCache.for_day("day", FALL, FALL, tmp_path / "c"))
    new = [r for r in today_rows() if r[0] >= utc(2025, 11, 2, 19, 55) and r[1] == "temperature"]
    changed = [(utc(2025, 11, 2, 13, 30), "humidity", 99.0)]  # 05:30 PST
    frame = readings_frame(rows + new + changed)
    metas, files = render_today(frame, tmp_path / "cron", ChartCache.for_day("day", FALL, FALL, tmp_path / "c"))
    assert start_noon.astimezone(LA).strftime("%H") == "11"
    assert {k for k, m in metas.items() if m.drawn} == {
        ("temperature", "2025-11-02"), ("temperature", "2025-11-02T11"),
        ("humidity", "2025-11-02"), ("humidity", "2025-11-02T05")}
    _, fresh = render_today(frame, tmp_path / "fresh", None)
    assert files == fresh


def test_other_labels_are_other_charts(tmp_path):
    frame = readings_frame(today_rows())
    daily, _ = png_paths(tmp_path / "a", FALL, ["temperature"], [])
    (meta,) = render_day(frame, FALL, LA, SENSORS, daily, {}, ChartCache.for_day("day", FALL, FALL, tmp_path / "c"))
    renamed = [Sensor("temperature", "Air temperature", "°C")]
    (other,) = render_day(frame, FALL, LA, renamed, daily, {}, ChartCache.for_day("day", FALL, FALL, tmp_path / "c"))
    assert other.drawn and other.inputs_digest != meta.inputs_digest


def test_the_digest_covers_every_drawing_module(tmp_path):
    """Other drawing code is another chart: every module charts.py draws with is in the digest's code key."""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, sensorcharts.charts; print(*sorted(sys.modules))"],
        capture_output=True, text=True, check=True, cwd=chartcache.PACKAGE.parent).stdout.split()
    drawing = {name.split(".")[1] for name in imported if name.startswith("sensorcharts.")}
    drawing -= {"tables", "timegrid", "atomic"}  # they make the inputs, which are digested as values
    assert drawing <= set(chartcache.DRAWING_MODULES), drawing - set(chartcache.DRAWING_MODULES)
    copy = tmp_path / "sensorcharts"
    copy.mkdir()
    for module in chartcache.DRAWING_MODULES:
        (copy / f"{module}.py").write_bytes((chartcache.PACKAGE / f"{module}.py").read_bytes())
    assert chartcache.code_key(copy) == chartcache.code_key()
    (copy / "linechart.py").write_text((copy / "linechart.py").read_text() + "\n# another line width\n")
    chartcache.code_key.cache_clear()
    assert chartcache.code_key(copy) != chartcache.code_key()


def test_cache_keeps_the_cron_window_and_only_what_the_last_job_made(tmp_path):
    root = tmp_path / "cache"
    assert ChartCache.for_day("day", FALL - timedelta(days=1), FALL, root) is None  # before the window
    old = root / "day" / "2025-10-30"
    old.mkdir(parents=True)
    (old / "x.png").write_bytes(b"old")
    frame = readings_frame(today_rows())
    daily, hourly = png_paths(tmp_path / "a", FALL, ["temperature"], ["2025-11-02T05"])
    render_day(frame, FALL, LA, SENSORS, daily, hourly, ChartCache.for_day("day", FALL, FALL, root))
    kept = sorted(root.glob("day/2025-11-02/*.png"))
    assert len(kept) == 2
    # Hard links where possible: kept bytes cost no second copy while the charts exist.
    assert {p.stat().st_ino for p in kept} == {Path(p).stat().st_ino for p in [*daily.values(), *hourly.values()]}
    (meta,) = render_day(frame, FALL, LA, SENSORS, daily, {}, ChartCache.for_day("day", FALL, FALL, root))
    (kept,) = root.glob("day/2025-11-02/*.png")  # the hourly chart was not made again: let go
    assert not meta.drawn and kept.stat().st_ino == Path(daily["temperature"]).stat().st_ino
    assert not old.exists()
