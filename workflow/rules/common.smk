# The workflow's Python: config validation, the requested days, and the input functions that decide
# targets. The logic itself lives in the sensorcharts package (workflow/scripts/sensorcharts).

import hashlib
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from sensorcharts import cluster, fingerprints, publish, settings, warm
from sensorcharts.database import Source
from sensorcharts.jobs import run_step, stop_jobs_on_interrupt
from sensorcharts.timegrid import DATE_RE, HOUR_STAMP_RE, alternation, parse_date

settings.normalise(config)
# Snakemake's own report of a schema violation prints the whole schema and config (passwords in a
# database.url included); one sentence naming the key and what is allowed says more.
try:
    validate(config, "../schemas/config.schema.yaml")
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
# far) have other hours than T00..T23. Each set of hour labels gets its own render and upload rule,
# restricted to its dates; every other date is ordinary.
_special = PLAN.render_kinds()
_special_dates = [d for _, dates in _special.values() for d in dates]
DAY_KINDS = {
    "ordinary": (
        tuple(f"T{h:02d}" for h in range(24)),
        f"(?!{alternation(_special_dates)}){DATE_RE}" if _special_dates else DATE_RE,
    ),
    **{kind: (labels, alternation(dates)) for kind, (labels, dates) in _special.items()},
}

try:
    PUBLISH = publish.Settings.load()
except publish.PublishError as exc:
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
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
# Every rule's run: block hands its job to a process of its own (sensorcharts/jobs.py); Ctrl-C ends them.
stop_jobs_on_interrupt()
# On a cluster: each job's warm server inside its allocation, threads in group jobs, status checks that end
# (sensorcharts/cluster.py).
cluster.prepare(workflow)


def code_digest(script, *modules):
    """Digest of a rule's script and the package modules it uses, passed as a param.

    Snakemake's own "code" trigger looks only at the script's mtime: it misses changes in the package
    and fires on a fresh clone. With this param (and the workflow profile's rerun triggers, which leave
    "code" out) a change in, say, the plot style redoes exactly the rules whose code changed.
    """
    digest = hashlib.sha256((SCRIPTS / f"{script}.py").read_bytes())
    for module in ("jobs", "timegrid", "atomic") + modules:
        digest.update((SCRIPTS / "sensorcharts" / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


def _fingerprint_block(days):
    """Fingerprints of ``days`` (bounds as in the extract: today ends at the plan's now).

    A database that cannot be read stops the run here, before any job and with nothing written, in one
    sentence: raised from an input function, any Exception would come wrapped in Snakemake's report with
    wildcards and a traceback, so this exits instead (Snakemake holds no lock while building the DAG).
    """
    from sensorcharts.database import DATABASE_ERRORS

    source = Source.from_config(settings.database_url(config), config["database"])
    try:
        return fingerprints.compute(source, SENSORS, days, PLAN.tz, PLAN.now)
    except DATABASE_ERRORS as exc:
        raise SystemExit(f"sensor-charts: stopped before any job, nothing written: {exc}.") from None


def _fingerprints_written(folder):
    """New or changed fingerprints: extract jobs will run.

    Make Snakemake look at ``folder`` again: it caches directory listings while it builds the DAG, so a
    fingerprint written after the folder was listed (a day outside the blocks, asked for by path, is
    fingerprinted when the DAG reaches it) would otherwise look missing. And start the warm job server
    now (in the background), so that its imports overlap the rest of the DAG instead of delaying the first
    jobs; not for a dry-run, --touch or a cluster, where no job runs here.
    """
    listed = getattr(getattr(workflow.iocache, "exists_local", None), "has_inventory", None)
    if listed is not None:
        listed.discard(folder)
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
    return {
        "daily": [f"results/images/{s}/daily/{date}.png" for s in SENSORS],
        "hourly": [f"results/images/{s}/hourly/{date}{label}.png" for s in SENSORS for label in labels],
        "cumulative": [f"results/images/{s}/cumulative/{date}.png" for s in SENSORS],
    }


def chart_outputs(paths):
    """Chart paths for a rule's output, as temp() when deleted after a successful upload."""
    return [temp(p) for p in paths] if DELETE_CHARTS else paths


def receipts_file(kind, date="{date}"):
    """The receipts file of one upload job: ``kind`` "day" (daily and hourly charts) or "cumulative"."""
    return f"results/receipts/{kind}/{date}.json"


def receipts_of_day(day):
    """The receipts files of one local day: its daily and hourly charts', its heatmaps'."""
    return [receipts_file(kind, day.isoformat()) for kind in ("day", "cumulative")]


def requested_receipts(wildcards=None):
    """Receipts of every chart in the requested range."""
    return [r for day in PLAN.days for r in receipts_of_day(day)]


def recent_receipts(wildcards=None):
    """Receipts of today and the look-back days: what the cron target keeps up to date."""
    return [r for day in PLAN.recent_days for r in receipts_of_day(day)]


def _one_rescheduling_timer():
    """Keep at most one pending re-scheduling timer in Snakemake's job scheduler, as a daemon thread.

    Snakemake's scheduler (9.x, job-rate limit default 100/1s) arms a one-second threading.Timer at the end
    of every scheduling round while jobs wait to start, and each timer's round arms another: every finished
    job starts a chain that lives as long as jobs wait. Rounds grow with the square of the jobs (13,700 for
    a 61-day backfill of 308 jobs, 9 s of CPU choosing jobs), and each round stats the inputs of every job
    waiting. One pending timer wakes the scheduler just as well: a round it starts arms the next. Timers are
    non-daemon threads, so every run also waited ~1 s after its last job to exit; these do not.
    """
    from snakemake.scheduling.job_scheduler import JobScheduler

    if not hasattr(JobScheduler, "_schedule_reevalutation"):  # another Snakemake: leave it as it is
        return

    def schedule_reevaluation(self, delay):
        if getattr(self, "_sensorcharts_timer_pending", False):
            return
        self._sensorcharts_timer_pending = True

        def fire():
            self._sensorcharts_timer_pending = False  # before waking it, so the round it starts re-arms
            self._open_jobs.release()

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        timer.start()

    JobScheduler._schedule_reevalutation = schedule_reevaluation


_one_rescheduling_timer()


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


onstart:
    _warn_if_jobs_spawn_snakemake()
