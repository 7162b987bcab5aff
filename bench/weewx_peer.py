"""The closest peer, WeeWX 5.x, charting the benchmark's data: for comparing the 10-day backfill with it.

WeeWX (https://weewx.com) keeps weather-station readings in a database and draws charts from them with its
image generator (Pillow, in process). This script gives it the same readings bench/run.py puts in PostgreSQL
(bench/common.synthetic_readings: one reading a minute of temperature, humidity and pressure) as one-minute
archive records, configures two reports of three 1000x400 line charts each (one hour, one day), and runs
them as a user backfilling charts would: ``weectl report run REPORT --epoch=END`` once per hour and once per
day (a report run draws the charts of the period ending at --epoch), in 2 lanes at once (2 cores, like
``snakemake --cores 2``). Each run's charts are moved aside, so every chart of the period stays on disk.
The wall time of all the runs is the figure; setting up the station and loading the database are not timed.

WeeWX is not a dependency of the workflow. Install it into a virtual environment of its own and name it:

    python3 -m venv /tmp/weewx && /tmp/weewx/bin/pip install 'weewx>=5,<6'
    tools/with-env python bench/weewx_peer.py --weectl /tmp/weewx/bin/weectl [--days 10]

(``SENSORCHARTS_WEECTL`` or a ``weectl`` on PATH do as well; bench/run.py runs it that way beside its 10-day
backfill and says why when it cannot.) The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SENSORS, TZ, synthetic_readings  # noqa: E402

LANES = 2
WEEWX_FIELDS = {"temperature": "outTemp", "humidity": "outHumidity", "pressure": "barometer"}
WEEWX_VARIABLE = "SENSORCHARTS_WEECTL"

# Two skins of one image generator each: the hour's and the day's charts of the three sensors, 1000x400,
# raw one-minute readings (no aggregation: such charts are drawn on every run), in the Seasons skin's style.
SKIN = """
[Units]
    [[Groups]]
        group_temperature = degree_C
        group_pressure = hPa
[ImageGenerator]
    image_width = 1000
    image_height = 400
    image_background_color = "#ffffff"
    chart_background_color = "#ffffff"
    chart_gridline_color = "#d0d0d0"
    anti_alias = 1
    top_label_font_path = {font}/OpenSans-Bold.ttf
    top_label_font_size = 14
    unit_label_font_path = {font}/OpenSans-Bold.ttf
    unit_label_font_size = 12
    bottom_label_font_path = {font}/OpenSans-Regular.ttf
    bottom_label_font_size = 12
    axis_label_font_path = {font}/OpenSans-Regular.ttf
    axis_label_font_size = 10
    chart_line_colors = "#4282b4", "#b44242", "#42b442"
    plot_type = line
    line_type = solid
    marker_type = none
    width = 1
    aggregate_type = none
    show_daynight = false
    [[{span}_images]]
        time_length = {seconds}
        x_label_format = %H:%M
{plots}
[Generators]
    generator_list = weewx.imagegenerator.ImageGenerator
"""

# Run by WeeWX's own Python: lanes' configuration files and the archive database from a CSV of readings.
LOADER = """
import csv, sys
import configobj, weecfg, weewx, weewx.manager

station, readings, lanes = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = configobj.ConfigObj(station + "/weewx.conf", encoding="utf-8", interpolation=False)
for name in config["StdReport"].sections:
    if "enable" in config["StdReport"][name]:
        config["StdReport"][name]["enable"] = "false"
for report in ("hour", "day"):
    config["StdReport"][report] = {"skin": "sensorcharts_" + report, "enable": "true"}
# WeeWX logs to syslog by default; where there is none (a container) each line would print a traceback.
config["Logging"] = {"root": {"handlers": ["console"]}}
for lane in range(lanes):
    config["StdReport"]["HTML_ROOT"] = "lane%d" % lane
    config.filename = station + "/lane%d.conf" % lane
    config.write()
path, config = weecfg.read_config(station + "/lane0.conf")
with open(readings) as f:
    rows = [[float(x) for x in row] for row in csv.reader(f)]
with weewx.manager.open_manager_with_config(config, "wx_binding", initialize=True) as manager:
    manager.addRecord({"dateTime": int(t), "usUnits": weewx.METRICWX, "interval": 1, "outTemp": a,
                       "outHumidity": b, "barometer": c} for t, a, b, c in rows)
print(weewx.__version__)
"""


def find_weectl(explicit: str | None = None) -> tuple[Path | None, str]:
    """WeeWX's ``weectl`` (``explicit``, else $SENSORCHARTS_WEECTL, else PATH), or None and why not."""
    candidate = explicit or os.environ.get(WEEWX_VARIABLE) or shutil.which("weectl")
    if not candidate:
        return None, (f"no weectl: install WeeWX 5 in a virtual environment of its own (pip install 'weewx>=5,<6')"
                      f" and set {WEEWX_VARIABLE} to its bin/weectl")
    path = Path(candidate)
    if not (path.is_file() and os.access(path, os.X_OK)):
        return None, f"{candidate} is not an executable weectl"
    python = path.with_name("python")
    if not python.exists():
        return None, f"no python beside {candidate} (WeeWX's own interpreter, to load its database)"
    return path, ""


def readings_csv(first: date, days: int, path: Path) -> int:
    """The benchmark's readings of ``days`` local days from ``first`` as CSV rows (epoch, temp, hum, press)."""
    import numpy as np

    lo = datetime.combine(first, datetime.min.time(), TZ).astimezone(timezone.utc)
    hi = datetime.combine(first + timedelta(days=days), datetime.min.time(), TZ).astimezone(timezone.utc)
    table = synthetic_readings(lo, hi, 60, columns="db")
    t = table.column("recorded_at").to_numpy().astype("datetime64[s]").astype(np.int64)
    values = table.column("value").to_numpy().reshape(-1, len(SENSORS))
    rows = np.column_stack([t[:: len(SENSORS)], values])
    np.savetxt(path, rows, delimiter=",", fmt=["%d", "%.3f", "%.3f", "%.3f"])
    return len(rows) * len(SENSORS)


def prepare(weectl: Path, root: Path, first: date, days: int) -> dict:
    """A WeeWX station under ``root`` holding the readings, with lane configurations; not timed."""
    station = root / "station"
    subprocess.run([str(weectl), "station", "create", str(station), "--no-prompt", "--units=metricwx",
                    "--location=sensor-charts benchmark"], check=True, capture_output=True, text=True)
    font = station / "skins" / "Seasons" / "font"
    for span, seconds in (("hour", 3600), ("day", 86400)):
        plots = "".join(f"        [[[{span}_{s}]]]\n            [[[[{WEEWX_FIELDS[s]}]]]]\n" for s in SENSORS)
        skin = station / "skins" / f"sensorcharts_{span}"
        skin.mkdir()
        (skin / "skin.conf").write_text(SKIN.format(font=font, span=span, seconds=seconds, plots=plots))
    rows = readings_csv(first, days, root / "readings.csv")
    done = subprocess.run([str(weectl.with_name("python")), "-c", LOADER, str(station), str(root / "readings.csv"),
                           str(LANES)], check=True, capture_output=True, text=True)
    return {"station": station, "readings": rows, "version": done.stdout.strip().splitlines()[-1]}


def report_runs(first: date, days: int) -> list[tuple[str, int, str]]:
    """(report, --epoch, label) of every run: each hour's, then each day's, ending at the period's end."""
    runs = []
    for i in range(days):
        day = first + timedelta(days=i)
        start = datetime.combine(day, datetime.min.time(), TZ)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), TZ)
        hours = int((end - start).total_seconds() // 3600)
        runs += [("hour", int(start.timestamp()) + 3600 * (h + 1), f"{day}T{h:02d}") for h in range(hours)]
        runs.append(("day", int(end.timestamp()), day.isoformat()))
    return runs


def measure(weectl: Path, root: Path, first: date, days: int) -> dict:
    """Prepare a station with ``days`` days from ``first`` and time every report run, in LANES lanes."""
    setup = prepare(weectl, root, first, days)
    station = setup["station"]
    runs = report_runs(first, days)
    env = dict(os.environ, TZ=TZ.key)  # WeeWX labels its axes in the process's local time
    failures: list[str] = []

    def lane(index: int) -> None:
        config = station / f"lane{index}.conf"
        produced = station / f"lane{index}"
        for report, epoch, label in runs[index::LANES]:
            done = subprocess.run([str(weectl), "report", "run", report, f"--config={config}", f"--epoch={epoch}"],
                                  capture_output=True, text=True, env=env)
            if done.returncode:
                failures.append(f"{report} {label}: {done.stderr[-2000:] or done.stdout[-2000:]}")
                return
            keep = station / "charts" / label
            keep.mkdir(parents=True)
            for chart in produced.glob("*.png"):
                chart.rename(keep / chart.name)

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(LANES)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"weectl report run failed: {failures[0]}")
    charts = sorted((station / "charts").glob("*/*.png"))
    expected = 3 * len(runs)
    if len(charts) != expected:
        raise RuntimeError(f"WeeWX made {len(charts)} charts, expected {expected}")
    return {"weewx_wall_s": wall, "weewx_charts": len(charts), "weewx_report_runs": len(runs), "weewx_lanes": LANES,
            "weewx_version": setup["version"], "weewx_readings": setup["readings"],
            "weewx_chart_kb": sum(p.stat().st_size for p in charts) / len(charts) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weectl", help=f"WeeWX's weectl (default: ${WEEWX_VARIABLE}, else weectl on PATH)")
    ap.add_argument("--days", type=int, default=10, help="local days to chart (default 10)")
    ap.add_argument("--first", default="2025-05-01", help="first local day (default 2025-05-01, as bench/run.py)")
    ap.add_argument("--keep", type=Path, help="keep the station (database, configuration, charts) in this new folder")
    args = ap.parse_args()
    weectl, why = find_weectl(args.weectl)
    if weectl is None:
        sys.exit(f"weewx_peer: {why}")
    with tempfile.TemporaryDirectory(prefix="bench-weewx-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        r = measure(weectl, root, date.fromisoformat(args.first), args.days)
    print(f"WeeWX {r['weewx_version']}: {r['weewx_charts']} charts from {r['weewx_report_runs']} report runs in"
          f" {LANES} lanes: {r['weewx_wall_s']:.1f} s ({1000 * r['weewx_wall_s'] * LANES / r['weewx_charts']:.0f}"
          f" ms-core a chart, {r['weewx_chart_kb']:.0f} KB a chart); load average {os.getloadavg()}")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
