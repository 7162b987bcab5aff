"""What ``snakemake --report`` shows besides Snakemake's own run statistics.

One job per run (rule ``prepare_report``) turns the run's chart metadata, tables and receipts into:

* ``charts.json``: per chart (``{sensor}/{interval}/{stamp}``), the labels the report lists it with; the
  chart captions (``workflow/report/chart.rst``) are built from the same labels;
* ``statistics.html``: the daily and hourly statistics of the requested days;
* ``published.html``: every chart's CID and upload state, with links; when charts are deleted after their
  upload, this page is how the report reaches them;
* ``charts/{sensor}/{interval}/{stamp}/chart.png``: hard links to the charts (no extra space), only when they
  are kept. A hard link keeps the chart the job saw, so the folder stays consistent with ``charts.json`` when
  the cron target re-renders today's charts between two runs of ``all``. The report lists that folder with a
  pattern, so each chart gets its own wildcards (sensor, interval, stamp), which its category, labels and
  caption use. Every link has the same file name on purpose: Snakemake appends a link target for each
  distinct result file name to every caption, and parsing 750 of them (a month of hourly charts) costs
  ~90 ms per caption, against ~9 ms for a handful.

Only the standard library at import time: the workflow imports this module to build its rules.
"""

from __future__ import annotations

import functools
import html
import json
import os
import shutil
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from .chartid import ChartId

INTERVALS = {"daily": "Daily", "hourly": "Hourly", "cumulative": "Cumulative"}
GATEWAY = "https://ipfs.io/ipfs/"  # a public IPFS gateway for clickable links; the ipfs:// URL is shown too
MISSING = "–"


# ---------------------------------------------------------------------------------------------------------
# Per-chart labels
# ---------------------------------------------------------------------------------------------------------


def local_time(iso: str, tz: ZoneInfo) -> str:
    """``2025-11-02T01:00:00-08:00`` as ``2025-11-02 01:00 PST`` (the zone's abbreviation, never ambiguous)."""
    t = datetime.fromisoformat(iso).astimezone(tz)
    return f"{t:%Y-%m-%d %H:%M} {t.tzname()}"


def chart_labels(meta: dict, tz: ZoneInfo) -> dict[str, str]:
    """The report's labels of one chart, from its metadata.

    All values are strings (the report's table treats a 0 as empty). ``dropped points`` (null, non-finite or
    out-of-range readings not drawn) is there when the metadata has it. The first label, the stamp, is unique
    and sorts chronologically; local start and end are unique too, which keeps Snakemake's report from
    turning any label into an on/off toggle.
    """
    labels = {
        "chart": meta["stamp"],
        "local start": local_time(meta["start_time"], tz),
        "local end": local_time(meta["end_time"], tz),
        "data points": f"{meta['data_points']:,}",
        "processing time": f"{meta.get('processing_time', 0.0):.3f} s",
    }
    if meta.get("dropped_points") is not None:  # daily and hourly charts: readings of the period not drawn
        labels["dropped points"] = f"{meta['dropped_points']:,}"
    return labels


def read_metadata(metadata_paths) -> list[dict]:
    """Every chart's metadata in the metadata files (results/metadata/{kind}/{date}.json), in their order."""
    return [meta for path in metadata_paths for meta in json.loads(Path(path).read_text(encoding="utf-8"))]


def chart_index(metas: list[dict], tz: ZoneInfo) -> dict[str, dict[str, str]]:
    """Labels of every chart in ``metas`` (read_metadata), keyed by the chart's KV key (``ChartId.key``)."""
    return dict(sorted((ChartId.from_meta(meta).key, chart_labels(meta, tz)) for meta in metas))


@functools.lru_cache(maxsize=4)
def _read_index(path: str, mtime_ns: int) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def labels_for(index_path, wildcards) -> dict[str, str]:
    """Labels of the chart named by ``wildcards`` (sensor, interval, stamp), read from ``charts.json``.

    Called by ``report(labels=...)`` once per chart while ``snakemake --report`` runs; the file is parsed once.
    """
    path = str(index_path)
    index = _read_index(path, os.stat(path).st_mtime_ns)
    return index[ChartId(wildcards.sensor, wildcards.interval, wildcards.stamp).key]


LINKS_FOLDER = "results/report/charts"  # the `charts` output of prepare_report (workflow/rules/report.smk)
CHART_LINK = "{sensor}/{interval}/{stamp}/chart.png"


def drop_links(folder) -> None:
    """Remove the links of an earlier run that kept its charts: they would keep deleted charts on disk."""
    shutil.rmtree(folder, ignore_errors=True)


def link_charts(metas: list[dict], folder) -> int:
    """Hard links ``folder/{sensor}/{interval}/{stamp}/chart.png`` to each chart in ``metas`` (read_metadata;
    copies where links fail); returns the number linked.

    The charts are not the report job's inputs: the metadata files are, and each is written by the job that
    writes its charts, so the charts are there and current whenever it is. Declaring every chart too made
    Snakemake match each of them to the rules that could make it while building the DAG (~0.7 s of a 30-day
    run, a tenth of a year's dry-run).
    """
    folder = Path(folder)
    for meta in metas:
        chart = ChartId.from_meta(meta)
        link = folder / CHART_LINK.format(sensor=chart.sensor, interval=chart.interval, stamp=chart.stamp)
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(chart.image, link)
        except OSError:  # another filesystem, or one without hard links
            shutil.copy2(chart.image, link)
    return len(metas)


# ---------------------------------------------------------------------------------------------------------
# HTML pages
# ---------------------------------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 1.5rem; }
h1 { font-size: 1.35rem; margin: 0 0 .3rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 .4rem; }
p.note { color: #57606a; margin: .2rem 0 1rem; max-width: 60rem; }
table { border-collapse: collapse; margin: .3rem 0 1rem; font-variant-numeric: tabular-nums; }
th, td { padding: .22rem .6rem; border-bottom: 1px solid #d8dee4; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; font-weight: 600; }
th.text, td.text { text-align: left; }
tr:hover td { background: #f6f8fa; }
td.empty { color: #8c959f; }
details { margin: .2rem 0; } summary { cursor: pointer; font-weight: 600; padding: .2rem 0; }
code { font-size: 12px; }
.no { color: #9a6700; } .yes { color: #1a7f37; }
"""


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _table(columns: list[tuple[str, bool]], rows: list[list[str]]) -> str:
    """An HTML table; ``columns`` are (heading, is_text); cells are already escaped."""
    head = "".join(f'<th class="{"text" if text else "num"}">{html.escape(name)}</th>' for name, text in columns)
    body = []
    for row in rows:
        cells = []
        for (_, text), cell in zip(columns, row):
            css = "text" if text else "num"
            cells.append(f'<td class="{css}{" empty" if cell == MISSING else ""}">{cell}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"


def _number(value, digits: int = 2) -> str:
    if value is None or value != value:  # None or NaN
        return MISSING
    return f"{value:,.{digits}f}"


def _clock(instant, tz: ZoneInfo) -> str:
    if instant is None or instant != instant:
        return MISSING
    t = instant.to_pydatetime().astimezone(tz)
    return f"{t:%H:%M:%S} {t.tzname()}"


def _sensor_name(sensors: dict, name: str) -> str:
    spec = sensors.get(name, {"display_name": name, "unit": ""})
    return f"{spec['display_name']} ({spec['unit']})" if spec["unit"] else spec["display_name"]


def _read_tables(paths):
    import pandas as pd
    import pyarrow.parquet as pq

    frames = [pq.read_table(p).to_pandas() for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


def statistics_page(daily_paths, hourly_paths, sensors: dict, tz: ZoneInfo) -> str:
    """The daily statistics of the days given as one table, and their hourly statistics, a folded table per day.

    ``daily_paths`` and ``hourly_paths`` are the days' tables (``…/date=YYYY-MM-DD/data.parquet``).
    """
    days = sorted(Path(p).parent.name.removeprefix("date=") for p in daily_paths)
    title = f"Statistics, {days[0]} to {days[-1]}" if len(days) > 1 else f"Statistics, {days[0]}"
    body = [
        f'<p class="note">Local days and hours in {html.escape(tz.key)}. Only readings with a value count; an '
        "hour or day without any has no row. Std is the sample standard deviation (empty for a single "
        "reading). Source: <code>results/tables/daily</code> and <code>results/tables/hourly</code>.</p>"
    ]
    daily, hourly = _read_tables(daily_paths), _read_tables(hourly_paths)
    order = {name: i for i, name in enumerate(sensors)}
    with_device = daily is not None and "device" in daily.columns

    def key(row):
        return (order.get(row["sensor"], len(order)), str(row.get("device", "")))

    body.append("<h2>Daily</h2>")
    if daily is None:
        body.append('<p class="note">No readings in these days.</p>')
    else:
        columns = [("Date", True), ("Sensor", True)] + ([("Device", True)] if with_device else [])
        columns += [("Hours", False), ("Readings", False), ("Mean", False), ("Min", False), ("Max", False),
                    ("Std", False), ("First reading", False), ("Last reading", False)]
        rows = []
        for _, r in sorted(daily.iterrows(), key=lambda item: (item[1]["local_date"], key(item[1]))):
            row = [html.escape(r["local_date"]), html.escape(_sensor_name(sensors, r["sensor"]))]
            if with_device:
                row.append(html.escape(str(r["device"]) if r["device"] is not None else MISSING))
            row += [f"{int(r['hours'])}", f"{int(r['count']):,}", _number(r["mean"]), _number(r["min"]),
                    _number(r["max"]), _number(r["std"]), _clock(r["first_reading"], tz),
                    _clock(r["last_reading"], tz)]
            rows.append(row)
        body.append(_table(columns, rows))

    body.append("<h2>Hourly</h2>")
    if hourly is None:
        body.append('<p class="note">No readings in these days.</p>')
    else:
        with_device = "device" in hourly.columns
        columns = [("Hour", True), ("Sensor", True)] + ([("Device", True)] if with_device else [])
        columns += [("Readings", False), ("Mean", False), ("Min", False), ("Max", False), ("Std", False)]
        for day, group in sorted(hourly.groupby("local_date"), key=lambda item: item[0]):
            rows = []
            for _, r in sorted(group.iterrows(), key=lambda item: (item[1]["hour"], key(item[1]))):
                start = datetime.fromisoformat(r["local_start"])
                row = [f"{start:%H:%M} {html.escape(start.astimezone(tz).tzname() or '')}",
                       html.escape(_sensor_name(sensors, r["sensor"]))]
                if with_device:
                    row.append(html.escape(str(r["device"]) if r["device"] is not None else MISSING))
                row += [f"{int(r['count']):,}", _number(r["mean"]), _number(r["min"]), _number(r["max"]),
                        _number(r["std"])]
                rows.append(row)
            hours = group["hour"].nunique()
            body.append(f"<details><summary>{html.escape(day)} · {hours} hours with readings</summary>"
                        f"{_table(columns, rows)}</details>")
    return _page(title, body)


def published_page(receipt_paths, sensors: dict, tz: ZoneInfo, charts_kept: bool) -> str:
    """Every chart's receipt: CID, upload state and links, per sensor and interval."""
    from .uploads import read_receipts

    receipts = defaultdict(list)
    for receipt in read_receipts(receipt_paths):
        meta = receipt["metadata"]
        receipts[(meta["sensor_type"], meta["interval"])].append((meta["stamp"], receipt))
    uploaded = sum(r["uploaded"] for items in receipts.values() for _, r in items)
    total = sum(len(items) for items in receipts.values())
    if charts_kept:
        where = ("The charts are kept under <code>results/images/</code> and shown in the report under their "
                 "sensor.")
    else:
        where = ("The charts were deleted after their upload (<code>DELETE_LOCAL_FILES</code>); open them "
                 "through the gateway links.")
    others = (" The others carry the CID computed locally: they were made while uploads were off (no "
              "<code>PINATA_JWT</code>)." if uploaded < total else "")
    body = [
        f'<p class="note">{uploaded:,} of {total:,} charts uploaded to IPFS through Pinata.{others} {where} '
        "Source: <code>results/receipts/</code>.</p>"
    ]
    columns = [("Chart", True), ("Local start", True), ("Data points", False), ("Size", False),
               ("Uploaded", True), ("CID", True), ("Links", True)]
    order = {name: i for i, name in enumerate(sensors)}
    for (sensor, interval), items in sorted(receipts.items(),
                                            key=lambda kv: (order.get(kv[0][0], len(order)),
                                                            list(INTERVALS).index(kv[0][1]))):
        rows = []
        for stamp, r in sorted(items):
            meta = r.get("metadata", {})
            if r["uploaded"]:
                state = f'<span class="yes">{html.escape(local_time(r["uploaded_at"], tz))}</span>' \
                    if r.get("uploaded_at") else '<span class="yes">yes</span>'
                gateway = GATEWAY + r["ipfs_url"].removeprefix("ipfs://")  # a chart alone, or in its day's folder
                links = (f'<a href="{html.escape(gateway)}" target="_blank" rel="noopener">gateway</a> '
                         f'<code>{html.escape(r["ipfs_url"])}</code>')
            else:
                state, links = '<span class="no">no</span>', MISSING
            rows.append([
                html.escape(stamp),
                html.escape(local_time(meta["start_time"], tz)) if "start_time" in meta else MISSING,
                f"{meta['data_points']:,}" if "data_points" in meta else MISSING,
                f"{r['size'] / 1024:,.0f} KiB",
                state,
                f"<code>{html.escape(r['cid'])}</code>",
                links,
            ])
        body.append(f"<h2>{html.escape(_sensor_name(sensors, sensor))} · {INTERVALS.get(interval, interval)}</h2>")
        body.append(_table(columns, rows))
    return _page("Published charts", body)
