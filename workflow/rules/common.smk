# The workflow's Python: config validation, the requested days, and the input functions that decide
# targets. The logic itself lives in the sensorcharts package (workflow/scripts/sensorcharts).

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from sensorcharts import fingerprints, settings
from sensorcharts.database import Source
from sensorcharts.timegrid import DATE_RE, HOUR_STAMP_RE, parse_date


settings.normalise(config)
validate(config, "../schemas/config.schema.yaml")
try:
    PLAN = settings.make_plan(config)
except settings.ConfigError as exc:
    raise WorkflowError(f"Invalid configuration: {exc}.") from None

SENSORS = list(PLAN.sensors)
# One render rule per set of hour labels (DST days, today so far); all other days are ordinary.
RENDER_KINDS = PLAN.render_kinds()
SPECIAL_DATES = [d for _, dates in RENDER_KINDS.values() for d in dates]
ORDINARY_DATE_RE = (
    f"(?!{'|'.join(SPECIAL_DATES)}){DATE_RE}" if SPECIAL_DATES else DATE_RE
)
DB_PARAMS = {k: v for k, v in config["database"].items() if k != "url"}
SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"


def code_digest(script, *modules):
    """Digest of a rule's script and the package modules it uses, passed as a param.

    Snakemake's own "code" trigger looks only at the script's mtime: it misses changes in the package
    and fires on a fresh clone. With this param (and the workflow profile's rerun triggers, which leave
    "code" out) a change in, say, the plot style redoes exactly the rules whose code changed.
    """
    digest = hashlib.sha256((SCRIPTS / f"{script}.py").read_bytes())
    for module in ("jobs", "timegrid") + modules:
        digest.update((SCRIPTS / "sensorcharts" / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


def _fingerprint_block(days):
    source = Source.from_config(settings.database_url(config), DB_PARAMS)
    try:
        return fingerprints.compute(source, SENSORS, days, PLAN.tz)
    except (ConnectionError, LookupError) as exc:
        raise WorkflowError(str(exc)) from None


# The demo database is an input file of its own (its mtime tells when it was recreated); a real
# database is followed through per-day fingerprints, queried only by the main Snakemake process.
FINGERPRINTS = fingerprints.Refresher(
    _fingerprint_block,
    "results/fingerprints",
    blocks=[PLAN.with_windows(PLAN.recent_days), PLAN.with_windows(PLAN.days)],
    window=PLAN.window,
    active=workflow.is_main_process and not settings.uses_demo_database(config),
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
    """Hourly tables of every day in the cumulative window ending on the wildcard's date."""
    return [
        f"results/tables/hourly/date={d.isoformat()}/data.parquet"
        for d in PLAN.window_days(day_of(wildcards))
    ]


def images_of_day(day):
    """Every image of one local day: daily, hourly (hours started) and cumulative, for every sensor."""
    stamp = day.isoformat()
    images = []
    for sensor in SENSORS:
        images.append(f"results/images/{sensor}/daily/{stamp}.png")
        images += [
            f"results/images/{sensor}/hourly/{stamp}{label}.png"
            for label in PLAN.labels(day)
        ]
        images.append(f"results/images/{sensor}/cumulative/{stamp}.png")
    return images


def requested_images(wildcards=None):
    """Images of every day in the requested range."""
    return [image for day in PLAN.days for image in images_of_day(day)]


def recent_images(wildcards=None):
    """Images of today and the look-back days: what the cron target keeps up to date."""
    return [image for day in PLAN.recent_days for image in images_of_day(day)]
