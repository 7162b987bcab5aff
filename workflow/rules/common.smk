# The workflow's Python: config validation, the requested days, and the input functions that decide
# targets. The logic itself lives in the sensorcharts package (workflow/scripts/sensorcharts).

import functools
import os
import sys
from datetime import timedelta
from pathlib import Path

import yaml

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from sensorcharts import cluster, fingerprints, indexing, providers, settings, snakemake_patches, warm
from sensorcharts.chartid import day_charts
from sensorcharts.codedigest import CodeDigests
from sensorcharts.connection import DATABASE_ERRORS, Source
from sensorcharts.jobs import remove_old_run_logs, remove_orphaned_temporaries, run_step, stop_jobs_on_interrupt
from sensorcharts.timegrid import DATE_RE, HOUR_STAMP_RE, alternation, parse_date

# Nested --config values arrive as text (upload='{threads: 8}'); the schema says what to read them as.
CONFIG_SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
settings.normalise(config, yaml.safe_load(CONFIG_SCHEMA.read_text(encoding="utf-8")))
# Snakemake's own report of a schema violation prints the whole schema and config (passwords in a
# database.url included); one sentence naming the key and what is allowed says more.
try:
    validate(config, str(CONFIG_SCHEMA))
    PLAN = settings.make_plan(config)
except WorkflowError as exc:
    problem = exc.__context__  # validate() raises while handling jsonschema's ValidationError
    if not hasattr(problem, "validator"):
        raise
    raise WorkflowError(f"Invalid configuration: {settings.describe_schema_error(problem)}.") from None
except settings.ConfigError as exc:
    raise WorkflowError(f"Invalid configuration: {exc}.") from None

SENSORS = list(PLAN.sensors)
# Each sensor's plausible range (what decides which readings the tables count), as a params value.
VALIDITY = {
    name: {k: spec[k] for k in ("valid_min", "valid_max", "out_of_range") if k in spec}
    for name, spec in config["sensors"].items()
}
# Rule outputs are fixed patterns, but a day's hourly images depend on the day: DST days and today (so
# far) have other hours than T00..T23. Each set of hour labels gets its own render and upload rules,
# restricted to its dates; the ordinary rules take any date, and a special date's own rules come first
# (ruleorder). Excluding the special dates from the ordinary pattern instead (a look-ahead of every clock
# change since 1970) made each of the ordinary rules' ~80 output patterns cost 2.7 ms to compile, in every run.
_special = PLAN.render_kinds()
DAY_KINDS = {
    "ordinary": (tuple(f"T{h:02d}" for h in range(24)), DATE_RE),
    **{kind: (labels, alternation(dates)) for kind, (labels, dates) in _special.items()},
}
for _kind in _special:
    for _rules in ("render_day", "upload_day", "upload_folder")[: 2 if _kind == "today" else 3]:
        workflow.ruleorder(f"{_rules}_{_kind}", f"{_rules}_ordinary")  # no folder for today: never finished

try:
    PUBLISH = providers.Settings.load()
except providers.PublishError as exc:
    raise WorkflowError(f"Invalid publishing settings: {exc}.") from None
# Charts are deleted once uploaded (receipts keep the DAG complete); never when they were not uploaded.
DELETE_CHARTS = PUBLISH.uploads_enabled and PUBLISH.delete_local_files
if workflow.is_main_process and not PUBLISH.uploads_enabled:
    print(
        'Uploads are off (PINATA_JWT is not set): receipts record local CIDs with "uploaded": false, '
        "and KV documents are written to results/kv/ only.",
        file=sys.stderr,
    )
elif workflow.is_main_process and PUBLISH.index_missing:
    print(
        f"KV indexing is off ({', '.join(PUBLISH.index_missing)} not set): KV documents are written to "
        "results/kv/ only.",
        file=sys.stderr,
    )
# What an extract depends on: table and columns, not the URL (a secret) nor the timeouts (how long to wait).
DB_PARAMS = {
    k: v
    for k, v in config["database"].items()
    if k not in ("url", "statement_timeout_seconds", "connect_timeout_seconds")
}
# Every rule's run: block hands its job to a process of its own (sensorcharts/jobs.py); Ctrl-C ends them.
stop_jobs_on_interrupt()
# On a cluster: each job's warm server inside its allocation, threads in group jobs, status checks that end
# (sensorcharts/cluster.py).
cluster.prepare(workflow)


# Each rule's `code` param: a digest of its script and of every package module the script imports (found by
# reading the imports, the job runner left out), so that a code change redoes exactly the rules it concerns.
# Snakemake's own "code" trigger (left out by the workflow profile) sees only the script's mtime.
CODE = CodeDigests(SCRIPTS)


def code_digest(script):
    """The `code` param of the rules that run ``workflow/scripts/<script>.py`` (sensorcharts/codedigest.py)."""
    return CODE.digest(script)


def _fingerprint_block(days):
    """Fingerprints of ``days`` and each sensor's newest reading in them (bounds as in the extract: today ends
    at the plan's now).

    A database that cannot be read stops the run here, before any job and with nothing written, in one
    sentence: raised from an input function, any Exception would come wrapped in Snakemake's report with
    wildcards and a traceback, so this exits instead (Snakemake holds no lock while building the DAG).
    """
    if not all(Path(FINGERPRINTS.folder, f"{day.isoformat()}.txt").exists() for day in days):
        _start_warm_server()  # new days, whose extracts will run: the server need not wait for the query
    source = Source.from_config(settings.database_url(config), config["database"])
    try:
        return fingerprints.survey(source, SENSORS, days, PLAN.tz, PLAN.now)
    except DATABASE_ERRORS as exc:
        raise SystemExit(f"sensor-charts: stopped before any job, nothing written: {exc}.") from None


def _fingerprints_written(folder):
    """New or changed fingerprints: extract jobs will run.

    Make Snakemake look at ``folder`` again: it caches directory listings while it builds the DAG, so a
    fingerprint written after the folder was listed (a day outside the blocks, asked for by path, is
    fingerprinted when the DAG reaches it) would otherwise look missing. And start the warm job server.
    """
    snakemake_patches.forget_listing(workflow, folder)
    _start_warm_server()


def _start_warm_server():
    """Start the warm job server now (in the background) when jobs will run, so that its imports overlap the
    rest of the DAG instead of delaying the first jobs; not for a dry-run, --touch or a cluster, where no
    job runs here. Does nothing when the server runs or is starting already."""
    if (
        workflow.executor_plugin is not None
        and workflow.local_exec
        and not (workflow.dryrun or workflow.touch)
        and warm.enabled()
    ):
        warm.start_early()


# The demo database is an input file of its own (its mtime tells when it was recreated); a real
# database is followed through per-day fingerprints, queried only by the main Snakemake process.
FINGERPRINTS = fingerprints.Refresher(
    _fingerprint_block,
    "results/fingerprints",
    blocks=[PLAN.with_windows(PLAN.recent_days), PLAN.with_windows(PLAN.days)],
    window=PLAN.window,
    active=workflow.is_main_process and not settings.uses_demo_database(config),
    after_write=_fingerprints_written,
)


wildcard_constraints:
    date=DATE_RE,
    sensor="|".join(SENSORS),
    stamp=HOUR_STAMP_RE,


def day_of(wildcards):
    """The wildcard's date, refusing days that have not begun (they have nothing to chart yet)."""
    day = parse_date(wildcards.date)
    if day > PLAN.today:
        raise WorkflowError(
            f"{wildcards.date} has not begun in {PLAN.tz.key} (today is {PLAN.today}); ask for an earlier day."
        )
    return day


def database_input(wildcards):
    """The demo database file when no database is configured (so it is created first), else the day's
    fingerprint file, which changes exactly when the day's rows do."""
    day = day_of(wildcards)
    if settings.uses_demo_database(config):
        return config["demo"]["path"]
    return FINGERPRINTS.path(day)


def window_hourly_tables(wildcards):
    """Hourly tables of the days with readings in the cumulative window ending on the wildcard's date.

    A day without readings adds only an empty row to the heatmap, so it is not extracted for it (in a
    backfill, half the extract jobs are such days before the range). When rows arrive for such a day, its
    fingerprint changes, the input list with it, and Snakemake redoes the heatmaps (the "input" trigger).
    """
    days = PLAN.window_days(day_of(wildcards))
    return [f"results/tables/hourly/date={d.isoformat()}/data.parquet" for d in days if FINGERPRINTS.has_rows(d)]


def charts(labels, date="{date}"):
    """Paths of one day's daily, hourly (one per label) and cumulative images of every sensor."""
    return {interval: [c.image for c in ids] for interval, ids in day_charts(SENSORS, date, labels).items()}


def chart_outputs(paths):
    """Chart paths for a rule's output, as temp() when deleted after a successful upload."""
    return [temp(p) for p in paths] if DELETE_CHARTS else paths


def receipts_file(kind, date="{date}"):
    """The receipts file of one upload job: ``kind`` "day" (daily and hourly charts uploaded one by one),
    "cumulative" (heatmaps, one by one) or "folder" (a finished day's charts, as one folder)."""
    return f"results/receipts/{kind}/{date}.json"


PUBLISH_OPTIONS = config["publish"]
SCHEDULE = indexing.Paths().schedule


def retired(day):
    """Older than ``publish.keep_days``: no longer published (still charted)."""
    keep = PUBLISH_OPTIONS["keep_days"]
    return keep is not None and day < PLAN.today - timedelta(days=keep)


def receipts_of_day(day):
    """The receipts files of one local day: in the cron window its charts are uploaded one by one (they
    change every few minutes); a finished day is one folder."""
    if retired(day):
        return []
    if day in PLAN.recent_days:
        return [receipts_file(kind, day.isoformat()) for kind in ("day", "cumulative")]
    return [receipts_file("folder", day.isoformat())]


def requested_receipts(wildcards=None):
    """Receipts of every chart in the requested range."""
    return [r for day in PLAN.days for r in receipts_of_day(day)]


def requested_charts(wildcards=None):
    """The metadata of retired days in the range: they are charted, not published."""
    return [
        f"results/metadata/{kind}/{day}.json" for day in PLAN.days if retired(day) for kind in ("day", "cumulative")
    ]


def recent_receipts(wildcards=None):
    """Receipts of today and the look-back days (what the cron target keeps up to date), and the folders of
    days that left the window while still published chart by chart (so they are packed and their single
    uploads deleted, even after the cron stopped for a while)."""
    left = [parse_date(d) for d in indexing.charts_published_alone(SCHEDULE)]
    days = list(PLAN.recent_days) + sorted(d for d in left if d < PLAN.recent_days[0])
    return [r for day in days for r in receipts_of_day(day)]


# The index job runs when new receipts arrive, and also when the schedule its last run left says it has work
# without them (a period ended, a latest pointer may be refreshed, a grace period ended, keys wait for
# budget): this file, an input of the index rules, then gets new content, which Snakemake reruns on.
INDEX_DUE = "results/publish/index-due.txt"


@functools.cache
def _refresh_index_due():
    """Once per run: new content for INDEX_DUE when the last index job's schedule says it has work."""
    if workflow.is_main_process and (indexing.index_due(SCHEDULE, PLAN.now) or not Path(INDEX_DUE).exists()):
        from sensorcharts import atomic

        atomic.write_text(INDEX_DUE, PLAN.now.isoformat() + "\n")


def index_due(days):
    """The index rules' input function (``days``: the days they index): the INDEX_DUE file, brought up to date
    once per run. The days' fingerprints come first, so that a database that cannot be read stops the run
    before anything is written."""

    def input_function(wildcards):
        if days:
            FINGERPRINTS.path(days[0])
        _refresh_index_due()
        return INDEX_DUE

    return input_function


# One pending re-scheduling timer instead of a chain per finished job (docs/snakemake-scheduler.md).
snakemake_patches.one_rescheduling_timer()
# Params compared without importing pandas (0.7 s of every run, cron no-ops included).
snakemake_patches.params_without_pandas()
# Each input hashed once for the metadata of a job's outputs, not once per output.
snakemake_patches.input_checksums_once()


def _warn_if_jobs_spawn_snakemake():
    """Rules hand their jobs over from a run: block (sensorcharts.jobs), which Snakemake runs in a thread
    of its own process only with force-use-threads (set by the workflow profile); otherwise each job
    starts a Snakemake of its own, which parses the workflow again: ~2 s a job, and no error."""
    if not workflow.use_threads:
        print(
            "sensor-charts: force-use-threads is off (the workflow profile sets it), so every job starts a "
            "Snakemake of its own (~2 s each); use the profile or pass --force-use-threads.",
            file=sys.stderr,
        )


# Where each render rule's job keeps its charts' bytes for the cron runs (sensorcharts.chartcache, which the
# Snakefile does not import: it brings numpy): .snakemake/chart-cache/{kind}/{date}/.
CHART_CACHE_KINDS = {"render_cumulative": "cumulative", **{f"render_day_{kind}": "day" for kind in DAY_KINDS}}


def _remove_what_killed_jobs_left():
    """Temporary files that jobs killed mid-write left beside the outputs and benchmark files of the jobs
    this run is about to do, in their chart caches, and in the few folders written besides outputs
    (fingerprints, the publishing state, counters): only those, so that a cron run does not look through a
    year of results."""
    published = indexing.Paths()
    besides = (FINGERPRINTS.folder, published.schedule.parent, published.pinned, published.metrics.parent)
    folders = {str(folder) for folder in besides}
    for job in workflow.dag.needrun_jobs():
        for path in (*job.output, *([job.benchmark] if job.benchmark else [])):
            folders.add(os.path.dirname(str(path)) or ".")
        if job.rule.name in CHART_CACHE_KINDS:
            folders.add(f".snakemake/chart-cache/{CHART_CACHE_KINDS[job.rule.name]}/{job.wildcards.date}")
    removed = remove_orphaned_temporaries(sorted(folders))
    if removed:
        print(f"sensor-charts: removed {len(removed)} temporary file(s) left by killed jobs", file=sys.stderr)


onstart:
    _warn_if_jobs_spawn_snakemake()
    _remove_what_killed_jobs_left()


def _after_the_run(succeeded):
    """After every real run, those with nothing to do included (snakemake_patches.after_every_run), for
    node_exporter's textfile collector: when a run last ended without error (a stale cron alerts) and, when
    the run read today's fingerprints, each sensor's newest reading (a silent sensor alerts; 0 for none in
    the days read). Then the old records of past runs are pruned."""
    import time

    from sensorcharts import metrics

    if succeeded:
        last_run = ("last_successful_run_timestamp_seconds", "gauge", "When a Snakemake run last ended without error.")
        metrics.write("results/metrics/sensor_charts_run.prom", [(*last_run, time.time())])
    if PLAN.today in FINGERPRINTS.done:
        newest = {s: FINGERPRINTS.newest[s].timestamp() if s in FINGERPRINTS.newest else 0 for s in SENSORS}
        text = "When each sensor's newest reading up to now was taken (0: none in the days the run read)."
        metrics.write(
            "results/metrics/sensor_charts_readings.prom",
            [("newest_reading_timestamp_seconds", "gauge", text, metrics.Labelled("sensor", newest))],
            if_changed=True,
        )
    if config["run_logs_days"] is not None:
        remove_old_run_logs(".snakemake/log", config["run_logs_days"], workflow.logger_manager.get_logfile())


snakemake_patches.after_every_run(workflow, _after_the_run)


# The report's inputs (workflow/rules/report.smk).
REPORT_DAYS = [day.isoformat() for day in PLAN.days]


def report_tables(kind):
    """The requested days' ``kind`` ("daily" or "hourly") tables, as an input function: a run without the report
    (the cron target) does not declare them while the Snakefile is read."""
    return lambda wildcards: [f"results/tables/{kind}/date={day}/data.parquet" for day in REPORT_DAYS]


def report_metadata(wildcards):
    return [f"results/metadata/{kind}/{day}.json" for kind in ("day", "cumulative") for day in REPORT_DAYS]
