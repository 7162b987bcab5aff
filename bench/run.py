"""The benchmark suite: one command, every figure measured side by side in the same run.

    tools/with-env python bench/run.py            # full: about 25 minutes on 2 cores (WeeWX and a cluster included)
    tools/with-env python bench/run.py --quick    # a few days of data, a few minutes (CI smoke)

It builds its own synthetic PostgreSQL data (one reading a minute for temperature, humidity and pressure;
zone America/Los_Angeles) in scratch databases on the server ``DATABASE_URL`` names when that is a
PostgreSQL URL, otherwise on a throwaway pgserver; the databases are dropped afterwards. Snakemake runs
with ``--cores 2``, in temporary working directories, with no publishing settings in the environment
(uploads off). Scenarios (quick values in brackets):

  chart cost  the project's daily chart (``render_day``, one sensor, empty hourly dict) vs a naive
              ``plt.figure; sns.lineplot; savefig; close`` of the same one-minute day, same size, same process;
              median ms over 30 [8] repetitions after warm-up
  dense day   the same ``render_day`` chart of a one-reading-a-second day vs the one-minute day
  backfill    ``snakemake --cores 2`` of 30 [3] local days from an empty results/ (2,340 [234] charts), then
              ``snakemake -n`` must have nothing to do. Also a 10 [2] day backfill, for linearity
  floor       the backfill's charts drawn again by ``render_day``/``render_cumulative`` in 2 long-lived
              processes (multiprocessing, spawn) from data loaded into memory beforehand; timed from both
              workers passing a barrier to both finishing. Backfill and floor alternate, 2 [1] rounds
              (B F B F), and each figure is its round's best: the machine's speed drifts within minutes.
              Also the workers' CPU time per chart (drawing, PNG, metadata)
  WeeWX peer  bench/weewx_peer.py right after the 10 [2] day backfill, on the same days and readings: the
              peer's hourly and daily charts, one `weectl report run` per period, 2 lanes. Only when
              WeeWX 5 is installed (SENSORCHARTS_WEECTL or weectl on PATH); otherwise it says why it skipped
  start-up    a bare Snakemake: ``snakemake -n`` of a workflow of one rule with nothing to do, in a temporary
              folder; median of 5 [3] runs. The cron figures are also given as ratios to it, which travel
              from machine to machine better than seconds do
  cron/no-op  bench/cron_history.py's measurement (``latest`` after one new hour; ``latest`` with nothing
              new) with 7 and 365 [3 and 10] days of history; median of 3 [1] runs, the two histories'
              runs taking turns
  steady cron bench/cron_steady.py: ``latest`` after one 5-minute slice at 23:00 local vs a no-op (7 days of
              history), alternating, median of 3 [1]; and the charts each steady run drew (their metadata)
  DAG         ``snakemake -n -q`` of a 365 [30] day backfill with results/ empty, on the long history
  extract     bench/extract_methods.py's measurement: one day of 5,000,000 [200,000] rows to Parquet by
              the project's ``extract_day`` vs ``COPY (same query) TO STDOUT`` into /dev/null; median of 3 [1]
  cluster     bench/cluster.py's measurement, when a Slurm cluster answers (tools/slurm-local start): the
              backfill of 30 [3] days on the cluster vs locally, 2 [1] rounds; skipped, saying why, otherwise

It prints progress, a job profile of the backfill (jobs and job seconds per rule from Snakemake's log and
benchmark files), then a table (one row per figure: value, target, met/missed) and, as the last line, one
JSON object with the figures. Targets are reported, never asserted; correctness (chart counts, "Nothing
to be done", the floor's PNGs byte-identical to the backfill's) is asserted or reported.

The workflow is copied (Snakefile, workflow/, config/, profiles/) at the start and every scenario runs
that copy, so edits to the repository during a run do not mix two versions. Each scenario's snakemake
runs get a private XDG_RUNTIME_DIR, so per-user state the workflow keeps there (its warm job server)
starts cold and is not shared with other runs on the machine; what is left running from it is stopped.
Everything runs on the same machine, so other load skews the figures: the header shows the load average.
Options: --keep DIR keeps the working directories (logs, benchmarks/, results/); --old-files adds
cron_history's no-op with 10,000 old files.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import (  # noqa: E402
    NOW,
    TZ,
    copy_readings,
    cpu_model,
    load_average,
    postgres_server,
    private_runtime,
    scratch_database,
    snakemake,
    synthetic_readings,
    workflow_version,
    write_config,
)

# Nothing here imports sensorcharts (or cron_history and extract_methods, which do) at module level: main()
# first snapshots the workflow (common.snapshot_workflow), so that the whole run measures one version of it.
CORES = 2
BACKFILL_FIRST = date(2025, 5, 1)  # May 2025: no DST change, every day ends before today
CHART_DAY = date(2025, 5, 1)
CUMULATIVE_DAYS, LOOKBACK_DAYS = 30, 2
# Targets of the cron figures, as multiples of a bare Snakemake start-up (bare_startup): a cron run with
# nothing new, and one that draws the new hour's charts, with a year of history.
NOOP_TO_STARTUP, UPDATE_TO_STARTUP = 2.0, 5.0
FULL = dict(backfill_days=30, backfill_rounds=2, linearity_days=10, histories=(7, 365), cron_repeats=3, dag_days=365,
            extract_rows=5_000_000, extract_repeats=3, chart_reps=30, chart_warmup=3, startup_repeats=5)
QUICK = dict(backfill_days=3, backfill_rounds=1, linearity_days=2, histories=(3, 10), cron_repeats=1, dag_days=30,
             extract_rows=200_000, extract_repeats=1, chart_reps=8, chart_warmup=2, startup_repeats=3)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stopped(runtime: dict) -> None:
    if runtime["stopped"]:
        say(f"stopped {len(runtime['stopped'])} process(es) the runs left behind in {runtime['folder']}"
            f" (pids {runtime['stopped']})")


def run_config(first: date, last: date) -> dict:
    return dict(start=first.isoformat(), end=last.isoformat(), now=NOW.isoformat(),
                cumulative_days=CUMULATIVE_DAYS, lookback_days=LOOKBACK_DAYS)


def make_plan(config: dict):
    from sensorcharts import settings

    return settings.make_plan(settings.normalise(dict(config)))


def expected_charts(config: dict) -> int:
    """Daily + hourly (hours started) + cumulative images of every sensor of every requested day."""
    plan = make_plan(config)
    return sum(len(plan.sensors) * (len(plan.labels(d)) + 2) for d in plan.days)


def chart_files(results: Path) -> list[Path]:
    return sorted(results.glob("images/*/*/*.png"))


# --- chart cost and dense day (in this process) ---------------------------------------------------


def day_frame(day: date, step_s: int, folder: Path):
    """A day of synthetic readings as a job sees it: written as an extract Parquet and read back."""
    import pyarrow.parquet as pq

    from sensorcharts.database import readings_schema
    from sensorcharts.tables import read_readings
    from sensorcharts.timegrid import day_bounds

    lo, hi = day_bounds(day, TZ)
    table = synthetic_readings(lo, hi, step_s, columns="extract").cast(readings_schema(True))
    table = table.sort_by([("recorded_at", "ascending"), ("sensor", "ascending"), ("device", "ascending"),
                           ("value", "ascending")])
    path = folder / f"readings-{step_s}s.parquet"
    pq.write_table(table, path, compression="zstd")
    return read_readings(path)


def chart_costs(folder: Path, reps: int, warmup: int) -> dict:
    """Median ms per chart: the project's daily chart (minute and dense day) and a naive seaborn chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    import yaml

    from sensorcharts.charts import DPI, HEIGHT_IN, WIDTH_IN, render_day, sensors_from_config

    folder.mkdir(parents=True, exist_ok=True)
    minute, dense = day_frame(CHART_DAY, 60, folder), day_frame(CHART_DAY, 1, folder)
    sensors = sensors_from_config(yaml.safe_load((common.WORKFLOW / "config/config.yaml").read_text())["sensors"])
    name = sensors[0].name

    def project(frame, tag: str) -> tuple[float, int]:
        t0 = time.perf_counter()
        (meta,) = render_day(frame, CHART_DAY, TZ, sensors, {name: str(folder / f"project-{tag}.png")}, {})
        return time.perf_counter() - t0, meta.data_points

    def naive(frame) -> float:
        t0 = time.perf_counter()
        rows = frame[frame["sensor"] == name]
        fig = plt.figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
        sns.lineplot(x=rows["recorded_at"], y=rows["value"])
        fig.savefig(folder / "naive.png", format="png", dpi=DPI)
        plt.close(fig)
        return time.perf_counter() - t0

    runs: dict[str, list[float]] = {"chart": [], "naive": [], "dense": []}
    for i in range(warmup + reps):  # interleaved, so drift affects all three alike
        chart_s, minute_points = project(minute, "minute")
        naive_s = naive(minute)
        dense_s, dense_points = project(dense, "dense")
        if i >= warmup:
            runs["chart"].append(chart_s)
            runs["naive"].append(naive_s)
            runs["dense"].append(dense_s)
    assert minute_points == 1440 and dense_points == 86_400, (minute_points, dense_points)
    ms = {k: 1000 * statistics.median(v) for k, v in runs.items()}
    return {
        "chart_ms": ms["chart"], "naive_chart_ms": ms["naive"], "chart_to_naive": ms["chart"] / ms["naive"],
        "dense_chart_ms": ms["dense"], "dense_to_minute": ms["dense"] / ms["chart"],
    }


# --- backfill, its job profile, and the floor -----------------------------------------------------


def backfill(url: str, wd: Path, days: int, check_noop: bool) -> dict:
    """`snakemake --cores 2` of ``days`` local days from BACKFILL_FIRST, in a fresh working directory."""
    config = write_config(wd, **run_config(BACKFILL_FIRST, BACKFILL_FIRST + timedelta(days=days - 1)))
    launched, before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, run = snakemake(wd, url, cores=CORES)
    ended, after = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    # Whose CPU it was: Snakemake's process (the child waited for here), the warm job server and its jobs.
    server_s, jobs_s = common.cpu_of_processes_naming(common.RUNTIME_DIR)
    cpu = {"snakemake": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
           "server": server_s, "jobs": jobs_s}
    charts = len(chart_files(wd / "results"))
    expected = expected_charts(config)
    assert charts == expected, f"backfill of {days} days made {charts} charts, expected {expected}"
    r = {"days": days, "wall_s": seconds, "charts": charts, "jobs": run.jobs(), "config": config, "wd": wd,
         "profile": job_profile(wd, launched, ended), "cpu": cpu}
    if check_noop:  # the range is done: a dry-run must find nothing to do
        r["noop_dryrun_s"], again = snakemake(wd, url, "-n", cores=CORES)
        assert "Nothing to be done" in again.output and again.jobs() == {}, again.output[-3000:]
    return r


LOG_TIME = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
LOG_RULE = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+):$")
LOG_JOBID = re.compile(r"^\s+jobid: (\d+)$")
LOG_DONE = re.compile(r"^Finished job(?:id:)? (\d+)")


def job_profile(wd: Path, launched: float, ended: float) -> dict:
    """Per rule: jobs and job seconds (Snakemake log, 1 s resolution); per benchmark folder: seconds and
    peak RSS (``benchmarks/*/*.tsv``); charts' own drawing time (``processing_time`` in the metadata)."""
    logs = sorted((wd / ".snakemake/log").glob("*.snakemake.log"))
    started: dict[str, tuple[str, float]] = {}
    rule_jobs: dict[str, int] = defaultdict(int)
    rule_s: dict[str, float] = defaultdict(float)
    first_start = last_end = None
    if logs:
        stamp, rule = None, None
        for line in logs[-1].read_text().splitlines():
            if m := LOG_TIME.match(line):
                stamp = time.mktime(time.strptime(m[1], "%a %b %d %H:%M:%S %Y"))
            elif m := LOG_RULE.match(line):
                rule = m[1]
            elif (m := LOG_JOBID.match(line)) and rule is not None:
                started[m[1]] = (rule, stamp)
                first_start = stamp if first_start is None else min(first_start, stamp)
                rule = None
            elif (m := LOG_DONE.match(line)) and m[1] in started:
                name, t0 = started.pop(m[1])
                rule_jobs[name] += 1
                rule_s[name] += stamp - t0
                last_end = stamp
    bench: dict[str, dict] = {}
    for tsv in sorted((wd / "benchmarks").glob("**/*.tsv")):
        lines = tsv.read_text().splitlines()
        if len(lines) < 2:
            continue
        row = dict(zip(lines[0].split("\t"), lines[1].split("\t")))
        b = bench.setdefault(str(tsv.parent.relative_to(wd / "benchmarks")),
                             {"files": 0, "s": 0.0, "cpu_s": 0.0, "max_rss": 0.0})
        b["files"] += 1
        b["s"] += float(row.get("s", "nan"))
        b["cpu_s"] += float(row.get("cpu_time", "nan"))
        try:
            b["max_rss"] = max(b["max_rss"], float(row.get("max_rss", "nan")))
        except ValueError:  # "-" when the job was too short to sample
            pass
    drawing: dict[str, list] = {}
    for meta in sorted((wd / "results/metadata").glob("*/*.json")):
        charts = json.loads(meta.read_text())
        d = drawing.setdefault(meta.parent.name, [0, 0, 0.0])  # files, charts, seconds
        d[0] += 1
        d[1] += len(charts)
        d[2] += sum(c.get("processing_time", 0.0) for c in charts)
    return {"rule_jobs": dict(rule_jobs), "rule_s": dict(rule_s), "bench": bench, "drawing": drawing,
            "unfinished": len(started), "log": logs[-1].name if logs else None,
            "to_first_job_s": None if first_start is None else first_start - launched,
            "after_last_job_s": None if last_end is None else ended - last_end}


def print_profile(b: dict) -> None:
    p = b["profile"]
    total = sum(p["rule_s"].values())
    print(f"\nbackfill job profile: {b['days']} days, {b['charts']} charts, wall {b['wall_s']:.1f} s on {CORES} cores"
          f" (log {p['log']})")
    if p["to_first_job_s"] is not None:
        print(f"  first job started {p['to_first_job_s']:.0f} s after launch (start-up, fingerprints, DAG);"
              f" last job finished {p['after_last_job_s']:.0f} s before exit (timestamps: 1 s resolution)")
    print(f"  {'rule':<26} {'jobs':>5} {'job s (log)':>12} {'s/job':>7} {'share':>6}")
    for rule in sorted(p["rule_s"], key=lambda r: -p["rule_s"][r]):
        n, s = p["rule_jobs"][rule], p["rule_s"][rule]
        print(f"  {rule:<26} {n:>5} {s:>12.0f} {s / n:>7.2f} {s / total if total else 0:>6.0%}")
    print(f"  {'total':<26} {sum(p['rule_jobs'].values()):>5} {total:>12.0f}"
          f"   = {total / (CORES * b['wall_s']):.0%} of {CORES} cores x wall")
    if b["jobs"] and b["jobs"] != p["rule_jobs"]:
        print(f"  Snakemake's job stats: {b['jobs']}")
    if p["unfinished"]:
        print(f"  ({p['unfinished']} job starts without a 'Finished' line in the log)")
    if p["bench"]:
        print(f"  {'benchmark folder':<26} {'files':>5} {'sum s':>12} {'s/job':>7} {'max RSS MB':>11}")
        for name, v in sorted(p["bench"].items()):
            print(f"  {name:<26} {v['files']:>5} {v['s']:>12.1f} {v['s'] / v['files']:>7.2f} {v['max_rss']:>11.0f}")
    for kind, (files, charts, seconds) in sorted(p["drawing"].items()):
        print(f"  metadata/{kind}: {files} jobs, {charts} charts, drawing+writing {seconds:.1f} s"
              f" ({1000 * seconds / max(charts, 1):.0f} ms/chart, processing_time)")
    a = core_seconds(b)
    print(f"  core-seconds: {CORES} cores x {b['wall_s']:.1f} s = {a['total']:.1f}; CPU of the render and heatmap"
          f" jobs {a['render']:.1f}, the extracts {a['extract']:.1f}, the other jobs {a['other_jobs']:.1f}, the warm"
          f" server {a['server']:.1f}, Snakemake {a['snakemake']:.1f};"
          f" the rest (PostgreSQL, idle cores) {a['rest']:.1f}")


def core_seconds(b: dict) -> dict:
    """The backfill's cores x wall seconds by whose they were: the CPU of its render and heatmap jobs and of
    its extracts (their benchmark files), of its other jobs (the rest of what the warm server's children
    used), of the warm server itself and of Snakemake's process; and what is left (PostgreSQL, other
    processes, idle cores)."""
    bench, cpu = b["profile"]["bench"], b["cpu"]
    render = sum(bench[k]["cpu_s"] for k in ("render_day", "render_cumulative") if k in bench)
    extract = bench["extract_day"]["cpu_s"] if "extract_day" in bench else 0.0
    total = CORES * b["wall_s"]
    return {"total": total, "render": render, "extract": extract, "other_jobs": cpu["jobs"] - render - extract,
            "server": cpu["server"], "snakemake": cpu["snakemake"],
            "rest": total - cpu["jobs"] - cpu["server"] - cpu["snakemake"]}


def floor_worker(index: int, days: list[str], results: str, out: str, config: dict, barrier, queue) -> None:
    """Load the days' readings and hourly tables and import everything (untimed); after the barrier, draw
    all their charts with the project's render_day and render_cumulative (timed)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from sensorcharts.charts import render_cumulative, render_day, sensors_from_config
    from sensorcharts.tables import read_readings

    try:
        plan = make_plan(config)
        sensors = sensors_from_config(config["sensors"])
        names = [s.name for s in sensors]
        res, out = Path(results), Path(out)
        tables: dict[date, object] = {}

        def hourly(d: date):
            if d not in tables:
                path = res / f"tables/hourly/date={d.isoformat()}/data.parquet"
                tables[d] = pq.read_table(path).to_pandas() if path.exists() else None
            return tables[d]

        work = []
        for text in days:
            day = date.fromisoformat(text)
            frame = read_readings(res / f"readings/date={text}/data.parquet")
            daily = {s: str(out / f"images/{s}/daily/{text}.png") for s in names}
            hourly_paths = {(s, f"{text}{label}"): str(out / f"images/{s}/hourly/{text}{label}.png")
                            for s in names for label in plan.labels(day)}
            window = pd.concat([t for d in plan.window_days(day) if (t := hourly(d)) is not None], ignore_index=True)
            cumulative = {s: str(out / f"images/{s}/cumulative/{text}.png") for s in names}
            work.append((day, frame, daily, hourly_paths, window, cumulative))
        barrier.wait()
        t0 = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
        cpu0 = time.process_time()
        charts = 0
        for day, frame, daily, hourly_paths, window, cumulative in work:
            charts += len(render_day(frame, day, plan.tz, sensors, daily, hourly_paths))
            charts += len(render_cumulative(window, day, plan.tz, plan.window, sensors, cumulative))
        queue.put((index, t0, time.monotonic(), charts, None, time.process_time() - cpu0))
    except BaseException as exc:  # noqa: BLE001  (reported by the parent)
        barrier.abort()
        queue.put((index, None, None, 0, repr(exc), None))


def floor(b: dict, out: Path) -> dict:
    """The backfill's charts drawn by the project's code in CORES long-lived processes; see floor_worker."""
    days = [d.isoformat() for d in make_plan(b["config"]).days]
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(CORES), ctx.Queue()
    workers = [ctx.Process(target=floor_worker, args=(i, days[i::CORES], str(b["wd"] / "results"), str(out),
                                                      b["config"], barrier, queue)) for i in range(CORES)]
    for w in workers:
        w.start()
    done = [queue.get(timeout=3 * 3600) for _ in workers]
    for w in workers:
        w.join()
    errors = [d[4] for d in done if d[4]]
    assert not errors, f"floor worker failed: {errors}"
    charts = sum(d[3] for d in done)
    assert charts == b["charts"], f"floor drew {charts} charts, the backfill {b['charts']}"
    ours = {p.relative_to(out): p.read_bytes() for p in chart_files(out)}
    theirs = {p.relative_to(b["wd"] / "results"): p for p in chart_files(b["wd"] / "results")}
    identical = sum(1 for k, v in ours.items() if k in theirs and theirs[k].read_bytes() == v)
    return {"floor_wall_s": max(d[2] for d in done) - min(d[1] for d in done), "floor_charts": charts,
            "floor_cpu_s": sum(d[5] for d in done), "identical": identical,
            "per_worker_s": [round(d[2] - d[1], 2) for d in sorted(done)]}


# --- a bare Snakemake start-up: the yardstick of the cron figures -----------------------------------

BARE_SNAKEFILE = 'rule done:\n    output:\n        "done.txt"\n    shell:\n        "touch {output}"\n'


def bare_startup(folder: Path, repeats: int) -> list[float]:
    """Wall seconds of ``snakemake -n`` of a one-rule workflow whose output exists: what any Snakemake run
    pays on this machine before a workflow does anything (interpreter, imports, parsing, an empty DAG)."""
    import subprocess

    folder.mkdir(parents=True)
    (folder / "Snakefile").write_text(BARE_SNAKEFILE)
    (folder / "done.txt").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run([common.SNAKEMAKE, "-n", "--cores", str(CORES)], cwd=folder, env=env,
                              capture_output=True, text=True)
        runs.append(time.perf_counter() - t0)
        assert done.returncode == 0 and "Nothing to be done" in done.stdout + done.stderr, done.stderr[-2000:]
    return runs


# --- DAG building (run on the long cron history) ---------------------------------------------------


def dag_dryrun(root: Path, days: int):
    def measure(url: str, first: date, today: date) -> dict:
        wd = root / f"dag_{days}d"
        config = write_config(wd, **run_config(today - timedelta(days=days - 1), today))
        seconds, _ = snakemake(wd, url, "-n", "-q", cores=CORES)  # -q prints no job list: count them untimed
        _, run = snakemake(wd, url, "-n", cores=CORES)
        jobs = sum(run.jobs().values())
        assert jobs > len(make_plan(config).days), f"{days}-day dry-run lists {jobs} jobs:\n{run.output[-2000:]}"
        return {"dag_s": seconds, "dag_jobs": jobs, "dag_days": days}

    return measure


# --- the steady cron run (bench/cron_steady.py) and the peer (bench/weewx_peer.py) ---------------------


def steady_cron(admin_url: str, root: Path, xdg: Path, repeats: int) -> dict:
    import cron_steady

    say(f"steady cron: `latest` after one 5-minute slice at 23:00 local vs a no-op, x{repeats}")
    with private_runtime(xdg / "steady") as runtime:
        r = cron_steady.bench_steady(admin_url, root, repeats)
    stopped(runtime)
    say(f"steady cron: no-op {r['noop']:.2f} s, steady {r['steady']:.2f} s, charts drawn {r['steady_drawn']}"
        f" of {r['charts_today']}")
    return r


def steady_figures(r: dict) -> dict:
    return {"steady_wall_s": r["steady"], "noop_wall_s_steady": r["noop"], "steady_to_noop": r["steady"] / r["noop"],
            "steady_charts_drawn": max(r["steady_drawn"])}


def weewx_beside(root: Path, days: int) -> dict:
    """WeeWX charting the same days right after the backfill of them, when weectl is to be had."""
    import weewx_peer

    weectl, why = weewx_peer.find_weectl()
    if weectl is None:
        say(f"WeeWX peer: skipped ({why})")
        return {"skipped": why}
    say(f"WeeWX peer: {days} days, one `weectl report run` per hour and per day, {weewx_peer.LANES} lanes")
    (root / "weewx").mkdir()
    r = weewx_peer.measure(weectl, root / "weewx", BACKFILL_FIRST, days)
    say(f"WeeWX peer: {r['weewx_wall_s']:.1f} s, {r['weewx_charts']} charts (WeeWX {r['weewx_version']})")
    return r


def weewx_figures(peer: dict, b_short: dict) -> dict:
    if "skipped" in peer:
        return {}
    days = b_short["days"]
    return {f"weewx_wall_s_{days}d": peer["weewx_wall_s"], f"weewx_charts_{days}d": peer["weewx_charts"],
            f"backfill_to_weewx_{days}d": b_short["wall_s"] / peer["weewx_wall_s"]}


# --- the report -----------------------------------------------------------------------------------


def fmt(value) -> str:
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def report(figures: dict, targets: dict, header: list[str]) -> None:
    print()
    for line in header:
        print(line)
    print(f"{'figure':<24} {'value':>12}  {'target':<9} result")
    for key, value in figures.items():
        if key in targets:
            op, limit = targets[key]
            met = value <= limit if op == "<=" else value >= limit
            target = ("≤ " if op == "<=" else "≥ ") + f"{limit:g}"
            print(f"{key:<24} {fmt(value):>12}  {target:<9} {'met' if met else 'missed'}")
        else:
            print(f"{key:<24} {fmt(value):>12}  {'-':<9}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few days of data, fewer repetitions: a few minutes")
    ap.add_argument("--old-files", action="store_true",
                    help="also time the no-op with 10,000 old images and readings partitions (cron_history's check)")
    ap.add_argument("--keep", type=Path, help="keep the working directories under this (new) folder")
    args = ap.parse_args()
    p = QUICK if args.quick else FULL
    t_start, load_start = time.perf_counter(), load_average()
    figures: dict = {}
    info: dict = {}

    if args.keep:
        args.keep.mkdir(parents=True)
        tmp_ctx = None
        root = args.keep.resolve()
    else:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="bench-run-")
        root = Path(tmp_ctx.name)
    try:
        version = workflow_version()
        common.snapshot_workflow(root / "workflow-snapshot")
        say(f"workflow {version}: snapshot in {common.WORKFLOW}; every run below uses it")
        import cron_history
        import extract_methods

        from sensorcharts.timegrid import day_bounds

        say(f"chart cost and dense day: {p['chart_reps']} repetitions after {p['chart_warmup']} warm-up")
        c = chart_costs(root / "charts", p["chart_reps"], p["chart_warmup"])

        xdg = root / "xdg"  # each scenario's snakemake runs get their own XDG_RUNTIME_DIR (see private_runtime)
        with postgres_server(root) as admin_url:
            n = p["backfill_days"]
            with scratch_database(admin_url, "bench_backfill") as url:
                lo, _ = day_bounds(BACKFILL_FIRST, TZ)
                _, hi = day_bounds(BACKFILL_FIRST + timedelta(days=n - 1), TZ)
                rows = copy_readings(url, lo, hi, vacuum=True)
                # Backfill and floor alternate (B F B F in a full run) and each keeps its best time: the
                # machine's speed drifts by a quarter within minutes, which one B F pair turns into the ratio.
                backfills, floors = [], []
                for i in range(p["backfill_rounds"]):
                    say(f"backfill: {n} days ({rows:,} readings), snakemake --cores {CORES} from an empty results/"
                        f" (round {i + 1} of {p['backfill_rounds']})")
                    with private_runtime(xdg / f"backfill{n}_{i}") as runtime:
                        b = backfill(url, root / f"backfill_{n}d_{i}", n, check_noop=True)
                    stopped(runtime)
                    say(f"backfill: {b['wall_s']:.1f} s, {b['charts']} charts; then -n: nothing to be done"
                        f" ({b['noop_dryrun_s']:.1f} s)")
                    say(f"floor: the same {b['charts']} charts in {CORES} long-lived processes")
                    f = floor(b, root / f"floor_{i}")
                    say(f"floor: {f['floor_wall_s']:.1f} s (workers {f['per_worker_s']});"
                        f" {f['identical']}/{b['charts']} PNGs byte-identical to the backfill's")
                    backfills.append(b)
                    floors.append(f)
                b = min(backfills, key=lambda r: r["wall_s"])
                f = min(floors, key=lambda r: r["floor_wall_s"])
                m = p["linearity_days"]
                say(f"backfill: {m} days, for linearity")
                with private_runtime(xdg / f"backfill{m}") as runtime:
                    b_short = backfill(url, root / f"backfill_{m}d", m, check_noop=False)
                stopped(runtime)
                say(f"backfill: {b_short['wall_s']:.1f} s, {b_short['charts']} charts")
                peer = weewx_beside(root, m)

            say(f"start-up: a bare snakemake -n, x{p['startup_repeats']}")
            startup_runs = bare_startup(root / "bare", p["startup_repeats"])
            startup = statistics.median(startup_runs)
            say(f"start-up: {startup:.2f} s (runs {', '.join(f'{s:.2f}' for s in startup_runs)})")
            short_days, long_days = p["histories"]
            say(f"cron: {short_days} and {long_days} days of history: load, prepare `latest`; no-op and update"
                f" x{p['cron_repeats']}, taking turns; then a {p['dag_days']}-day dry-run")
            with private_runtime(xdg / "cron") as runtime:
                cron = cron_history.bench_histories(admin_url, root, p["histories"], p["cron_repeats"],
                                                    old_files=args.old_files, extra=dag_dryrun(root, p["dag_days"]))
            stopped(runtime)
            for r in cron:
                say(f"cron {r['days']}d: no-op {r['noop']:.2f} s, update {r['update']:.2f} s ({r['update_jobs'][0]})"
                    + (f"; dry-run {r['dag_s']:.1f} s ({r['dag_jobs']} jobs)" if "dag_s" in r else ""))

            say("publishing against the doubles: a 5-minute cron across local midnight, a backfill at 60 requests/min")
            import publishing

            with private_runtime(xdg / "publishing") as runtime:
                pub = publishing.measure(admin_url, root, args.quick)
            stopped(runtime)
            say(f"publishing: {pub['kv_writes_per_day_projected']} KV writes a day (projected),"
                f" pinned/live {pub['pinned_to_live']:.2f}, backfill {pub['backfill_upload_requests']} upload requests")
            steady = steady_cron(admin_url, root, xdg, p["cron_repeats"])

            say(f"extract: {p['extract_rows']:,} rows, extract_day vs COPY to /dev/null, x{p['extract_repeats']}")
            (root / "extract").mkdir()
            runs = extract_methods.measure(admin_url, p["extract_rows"], p["extract_repeats"], root / "extract",
                                           methods=["copy", "discard"])

            # --- the cluster scenario (bench/cluster.py), when a Slurm cluster answers here ---
            import cluster

            cluster_figures = cluster.from_suite(admin_url, root, args.quick, say)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    print_profile(b)
    print_profile(b_short)

    # --- figures ---
    figures["backfill_wall_s"] = b["wall_s"]
    figures["charts"] = b["charts"]
    figures["floor_wall_s"] = f["floor_wall_s"]
    figures["backfill_to_floor"] = b["wall_s"] / f["floor_wall_s"]
    figures["floor_cpu_ms_per_chart"] = 1000 * f["floor_cpu_s"] / f["floor_charts"]
    figures.update({f"backfill_core_s_{k}": v for k, v in core_seconds(b).items()})
    figures["backfill_wall_s_rounds"] = [round(r["wall_s"], 1) for r in backfills]
    figures["floor_wall_s_rounds"] = [round(r["floor_wall_s"], 1) for r in floors]
    figures.update(c)
    short, long_ = cron
    sd, ld = short["days"], long_["days"]
    figures[f"update_wall_s_{sd}d"] = short["update"]
    figures[f"update_wall_s_{ld}d"] = long_["update"]
    figures["update_history_ratio"] = long_["update"] / short["update"]
    figures[f"noop_wall_s_{sd}d"] = short["noop"]
    figures[f"noop_wall_s_{ld}d"] = long_["noop"]
    if "noop_old" in long_:
        figures["noop_with_10k_old_files_s"] = long_["noop_old"]
    figures["bare_startup_s"] = startup
    figures[f"noop_to_startup_{sd}d"] = short["noop"] / startup
    figures[f"noop_to_startup_{ld}d"] = long_["noop"] / startup
    figures[f"update_to_startup_{ld}d"] = long_["update"] / startup
    rows = runs["copy"][0]["rows"]
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    figures["extract_rows_per_s"] = round(rows / median["copy"])
    figures["copy_rows_per_s"] = round(rows / median["discard"])
    figures["extract_to_copy"] = median["discard"] / median["copy"]
    figures["extract_peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs["copy"])
    figures[f"backfill_wall_s_{b_short['days']}d"] = b_short["wall_s"]
    figures[f"backfill_wall_s_{b['days']}d"] = b["wall_s"]
    figures["backfill_linearity"] = (b["wall_s"] / b_short["wall_s"]) / (b["days"] / b_short["days"])
    figures[f"dag_dryrun_{long_['dag_days']}d_s"] = long_["dag_s"]
    figures.update(steady_figures(steady))
    figures.update(weewx_figures(peer, b_short))

    figures.update({k: v for k, v in pub.items() if k in publishing.FIGURES})
    # The cron targets are ratios to the bare start-up: seconds drift with the machine and its load.
    targets = {
        **publishing.TARGETS,
        "backfill_to_floor": ("<=", 1.2), "floor_cpu_ms_per_chart": ("<=", 35.0), "steady_to_noop": ("<=", 1.5),
        "steady_charts_drawn": ("<=", 12), f"backfill_to_weewx_{b_short['days']}d": ("<=", 0.5),
        "chart_to_naive": ("<=", 0.5), "dense_to_minute": ("<=", 2.0),
        f"update_to_startup_{ld}d": ("<=", UPDATE_TO_STARTUP), "update_history_ratio": ("<=", 1.2),
        f"noop_to_startup_{sd}d": ("<=", NOOP_TO_STARTUP), f"noop_to_startup_{ld}d": ("<=", NOOP_TO_STARTUP),
        "extract_to_copy": (">=", 0.5), "extract_peak_rss_mb": ("<=", 1024.0),
    }
    figures.update(cluster_figures)  # the cluster scenario (bench/cluster.py), if it ran
    targets.update(cluster.TARGETS)
    total = time.perf_counter() - t_start
    info.update(quick=args.quick, cpu_count=os.cpu_count(), load_avg_start=load_start, load_avg_end=load_average(),
                total_s=round(total, 1))
    header = [
        f"sensor-charts benchmark ({'quick' if args.quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M')},"
        f" total {total:.0f} s",
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}; load average (1/5/15 min) {load_start} at start,"
        f" {info['load_avg_end']} at end",
        f"workflow: {version}, snapshot taken at start"
        + "".join(f"; {k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("SENSORCHARTS_")
                  and k != common.SNAPSHOT_VARIABLE),
        f"snakemake --cores {CORES}, uploads off; backfill {b['days']} days from {BACKFILL_FIRST},"
        f" now {NOW.isoformat()}; backfill and floor: best of {p['backfill_rounds']} alternating rounds;"
        f" cron medians of {p['cron_repeats']}; charts: medians of {p['chart_reps']};"
        f" extract {rows:,} rows, median of {p['extract_repeats']}",
        f"floor: {f['identical']}/{f['floor_charts']} charts byte-identical to the backfill's;"
        f" backfill per chart {1000 * b['wall_s'] * CORES / b['charts']:.0f} ms-core,"
        f" floor {1000 * f['floor_wall_s'] * CORES / b['charts']:.0f} ms-core",
        "WeeWX peer: " + (f"skipped ({peer['skipped']})" if "skipped" in peer else
                          f"WeeWX {peer['weewx_version']}, {peer['weewx_report_runs']} report runs in"
                          f" {peer['weewx_lanes']} lanes, right after the {b_short['days']}-day backfill"),
    ]
    report(figures, targets, header)
    out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}
    out.update(info)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
