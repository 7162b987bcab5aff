"""`snakemake --report` after a real run: the report's pages, both chart modes, and the report in a browser.

The browser test loads the report from disk in headless Chromium (Debian's ``chromium``), lets the report's
JavaScript app render, clicks through to a chart as a person would, and takes a screenshot. Without Chromium
it is skipped locally and fails in CI (``CI=true``), where ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_sqlite, utc
from PIL import Image

from doubles import KVDouble, PinataDouble
from sensorcharts.timegrid import day_bounds, zone
from workflow_runner import Workdir

LA = zone("America/Los_Angeles")
DAY = date(2025, 11, 2)  # the fall-back day: 25 hours, 01:00 twice
SENSORS = {"temperature": {"display_name": "Temperature", "unit": "°C"},
           "humidity": {"display_name": "Humidity", "unit": "%"}}
OUTAGE = (utc(2025, 11, 2, 18, 0), utc(2025, 11, 2, 21, 0))  # humidity: nothing 10:00-13:00 PST
SETTINGS = dict(start=DAY.isoformat(), end=DAY.isoformat(), cumulative_days=1, now="2025-11-20T00:00:00+00:00",
                sensors=SENSORS)
CHARTS = {f"{s}:{kind}:{stamp}"  # the charts' KV keys
          for s in SENSORS
          for kind, stamps in (("daily", ["2025-11-02"]), ("cumulative", ["2025-11-02"]),
                               ("hourly", [f"2025-11-02T{h:02d}" for h in range(24)] + ["2025-11-02T01_2"]))
          for stamp in stamps}


def readings(day: date) -> list[tuple]:
    """One reading a minute of each sensor over the local day, humidity with a three-hour outage."""
    start, end = day_bounds(day, LA)
    rows, t, i = [], start, 0
    while t < end:
        rows.append((t, "temperature", round(12 + 6 * math.sin(i / 229), 3), "station-1"))
        if not OUTAGE[0] <= t < OUTAGE[1]:
            rows.append((t, "humidity", round(60 + 20 * math.cos(i / 229), 3), "station-1"))
        t += timedelta(minutes=1)
        i += 1
    return rows


def embedded(report: str, name: str):
    """A JSON value the report embeds as ``var <name> = …;`` in its own <script> element."""
    match = re.search(rf'<script id="[a-z-]+">\s*var {name} = (.*?);\s*</script>', report, re.S)
    assert match, f"no {name} in the report"
    return json.loads(match.group(1))


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Workdir:
    """One charted local day of two sensors (charts kept: no upload credentials) and its report.html."""
    tmp = tmp_path_factory.mktemp("report")
    db = make_sqlite(tmp / "readings.sqlite")
    db.insert(readings(DAY))
    wd = Workdir(tmp / "wd", db.url, **SETTINGS)
    wd.snakemake("--cores", "2")
    wd.snakemake("--report", "report.html")
    return wd


def test_report_pages_describe_every_chart(reported):
    wd = reported
    index = json.loads((wd.path / "results/report/charts.json").read_text())
    assert set(index) == CHARTS
    labels = index["temperature:daily:2025-11-02"]
    assert {k: labels[k] for k in ("chart", "local start", "local end", "data points")} == {
        "chart": "2025-11-02", "local start": "2025-11-02 00:00 PDT", "local end": "2025-11-03 00:00 PST",
        "data points": "1,500"}
    assert index["humidity:hourly:2025-11-02T01_2"]["local start"] == "2025-11-02 01:00 PST"
    assert index["humidity:hourly:2025-11-02T11"]["data points"] == "0"  # the outage
    assert re.fullmatch(r"\d+\.\d{3} s", index["humidity:daily:2025-11-02"]["processing time"])

    # Kept charts are hard-linked (not copied) for the report.
    link = wd.path / "results/report/charts/temperature/hourly/2025-11-02T01_2/chart.png"
    assert link.samefile(wd.path / "results/images/temperature/hourly/2025-11-02T01_2.png")
    assert len(wd.files("results/report/charts/*/*/*/chart.png")) == len(CHARTS)

    # The statistics page shows the numbers of the daily table.
    statistics = (wd.path / "results/report/statistics.html").read_text()
    daily = pd.read_parquet(wd.path / "results/tables/daily/date=2025-11-02/data.parquet").set_index("sensor")
    for sensor, spec in SENSORS.items():
        row = daily.loc[sensor]
        cells = re.search(rf"<td class=\"text\">2025-11-02</td><td class=\"text\">{spec['display_name']} "
                          rf"\({re.escape(spec['unit'])}\)</td>.*?</tr>", statistics)
        assert cells, sensor
        assert f'<td class="num">{row["count"]:,}</td>' in cells.group(0)
        assert f'<td class="num">{row["mean"]:,.2f}</td>' in cells.group(0)
        assert '<td class="num">25</td>' in cells.group(0)  # hours of the fall-back day
    assert statistics.count("<details>") == 1 and "25 hours with readings" in statistics

    # Without credentials nothing was uploaded: every chart is listed with its local CID, none as uploaded.
    published = (wd.path / "results/report/published.html").read_text()
    assert published.count('<span class="no">no</span>') == len(CHARTS)
    assert "0 of 54 charts uploaded" in published


def test_report_lists_the_charts_by_sensor_and_interval(reported):
    report = (reported.path / "report.html").read_text()
    categories = embedded(report, "categories")
    assert set(categories) == {"Temperature", "Humidity", "Tables", "Publishing"}
    assert set(categories["Temperature"]) == {"Daily", "Hourly", "Cumulative"}
    assert len(categories["Humidity"]["Hourly"]) == 25

    results = embedded(report, "results")
    chart = results["results/report/charts/temperature/daily/2025-11-02/chart.png"]
    assert chart["mime_type"] == "image/png" and chart["data_uri"].startswith("data:image/png;")
    assert chart["labels"]["data points"] == "1,500"
    caption = re.sub(r"\s+", " ", chart["caption"])
    assert "Temperature (°C), local day 2025-11-02" in caption
    assert "1,500 data points from 2025-11-02 00:00 PDT to 2025-11-03 00:00 PST" in caption
    assert re.search(r"Drawn and written in \d+\.\d{3} s", caption)
    empty = re.sub(r"\s+", " ", results["results/report/charts/humidity/hourly/2025-11-02T11/chart.png"]["caption"])
    assert "No readings to draw from 2025-11-02 11:00 PST to 2025-11-02 12:00 PST" in empty
    assert results["results/report/statistics.html"]["mime_type"] == "text/html"

    # Snakemake's run statistics: a runtime for every rule that ran.
    rules = {entry["rule"] for entry in embedded(report, "runtimes_spec")["data"]["values"]}
    assert {"extract_day", "render_day_25h", "render_cumulative", "prepare_report"} <= rules


# Clicks through the report's own menu as a person would (sensor, interval, a chart's view and info buttons),
# then records what the page shows.
DRIVER = """
<script>
(function () {
  const out = document.createElement("div");
  out.id = "report-check";
  const finish = (status) => { out.dataset.status = status; document.body.appendChild(out); };
  const link = (text) => {
    const a = [...document.querySelectorAll("a")].find((el) => el.textContent.trim() === text);
    if (!a) throw new Error("no link " + JSON.stringify(text));
    return a;
  };
  const steps = [
    () => link("Temperature").click(),
    () => link("Daily").click(),
    () => {
      const row = [...document.querySelectorAll("tr")].find(
        (tr) => tr.querySelector("td") && tr.querySelector("td").textContent.trim() === "2025-11-02");
      if (!row) throw new Error("no row for 2025-11-02");
      row.querySelectorAll("a")[0].click();  // view
    },
    () => row_info(),
    () => {
      const img = [...document.querySelectorAll("img")].find((i) => i.src.startsWith("data:image/png"));
      if (!img) throw new Error("no chart shown");
      out.dataset.width = img.naturalWidth;
      out.dataset.height = img.naturalHeight;
      finish("ok");
    },
  ];
  function row_info() {
    const row = [...document.querySelectorAll("tr")].find(
      (tr) => tr.querySelector("td") && tr.querySelector("td").textContent.trim() === "2025-11-02");
    row.querySelectorAll("a")[1].click();  // info: labels and caption
  }
  let i = 0;
  function next() {
    try { steps[i++](); } catch (e) { finish("error: " + e.message); return; }
    if (i < steps.length) setTimeout(next, 300);
  }
  window.addEventListener("load", () => setTimeout(next, 300));
})();
</script>
"""


def browser() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed; CI must run the browser test (.ci/run installs it)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def chromium(tmp_path: Path, page: Path, *args: str) -> str:
    """Load ``page`` from disk in headless Chromium, let its scripts run, return what Chromium printed."""
    cmd = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000", *args, page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_report_in_a_headless_browser(reported, tmp_path):
    report = reported.path / "report.html"
    # The app renders its menu: one entry per sensor, then the report's own pages.
    dom = chromium(tmp_path, report, "--dump-dom")
    menu = re.findall(r"<span>([^<]+)</span>", dom)
    assert {"Workflow", "Statistics", "Temperature", "Humidity", "Tables", "Publishing"} <= set(menu)

    driven = tmp_path / "driven.html"
    text = report.read_text()
    end = text.rindex("</body>")
    driven.write_text(text[:end] + DRIVER + text[end:])
    dom = chromium(tmp_path, driven, "--dump-dom")
    check = re.search(r'<div id="report-check"([^>]*)>', dom)
    assert check, "the driver did not finish"
    attributes = dict(re.findall(r'data-([a-z]+)="([^"]*)"', check.group(1)))
    assert attributes == {"status": "ok", "width": "1000", "height": "400"}  # the chart, decoded by the browser
    assert re.search(r"1,500 data points from 2025-11-02 00:00 PDT\s+to 2025-11-03 00:00 PST", dom)

    screenshot = tmp_path / "report.png"
    chromium(tmp_path, driven, f"--screenshot={screenshot}", "--window-size=1400,1000")
    with Image.open(screenshot) as image:
        assert image.size == (1400, 1000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 200  # text, the menu and a chart, not a blank or error page


def test_report_when_charts_are_deleted_after_upload(tmp_path):
    """Uploads on and DELETE_LOCAL_FILES (default true): no chart in the report, the Publishing page links them."""
    jwt, token = "pinata-jwt-report-test", "cf-token-report-test"
    db = make_sqlite(tmp_path / "readings.sqlite")
    db.insert([r for r in readings(DAY) if r[1] == "temperature"])
    with PinataDouble(jwt=jwt) as pinata, KVDouble(token=token, account="acct", namespace="ns") as kv:
        env = {"PINATA_JWT": jwt, "PINATA_UPLOAD_URL": pinata.url, "PINATA_API_URL": pinata.api_url,
               "CLOUDFLARE_API_TOKEN": token,
               "CLOUDFLARE_ACCOUNT_ID": kv.account, "KV_NAMESPACE_ID": kv.namespace, "CLOUDFLARE_API_URL": kv.url}
        wd = Workdir(tmp_path / "wd", db.url, env=env, **dict(SETTINGS, sensors={"temperature": SENSORS["temperature"]},
                                                              upload={"requests_per_minute": 6000}))
        wd.snakemake("--cores", "2")
    assert not wd.files("results/images/**/*.png") and not (wd.path / "results/report/charts").exists()

    wd.snakemake("--report", "report.html")
    report = (wd.path / "report.html").read_text()
    assert set(embedded(report, "categories")) == {"Tables", "Publishing"}
    published = (wd.path / "results/report/published.html").read_text()
    charts = len(wd.receipts())
    assert charts == 27 and f"{charts} of {charts} charts uploaded" in published
    # A finished day is one folder: each link is the folder's CID and the chart's path in it.
    urls = [receipt["ipfs_url"] for receipt in wd.receipts().values()]
    assert all(url.startswith("ipfs://") and url.count("/") == 5 for url in urls)
    assert all(f'href="https://ipfs.io/ipfs/{url.removeprefix("ipfs://")}"' in published for url in urls)
    assert "are not in this report" in embedded(report, "workflow_desc")
