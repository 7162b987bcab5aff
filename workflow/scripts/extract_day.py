"""Extract one local day of readings from the database to Parquet."""

from sensorcharts.database import Source, extract_day
from sensorcharts.jobs import log, run
from sensorcharts.settings import database_url
from sensorcharts.timegrid import day_bounds, parse_date, zone


def main(snakemake):
    day = parse_date(snakemake.wildcards.date)
    start, end = day_bounds(day, zone(snakemake.params.timezone))
    source = Source.from_config(database_url(snakemake.config), snakemake.params.source)
    rows = extract_day(source, snakemake.params.sensors, start, end, snakemake.output.readings)
    log.info("%s: %d readings in UTC [%s, %s)", day, rows, start.isoformat(), end.isoformat())


if "snakemake" in globals():
    run(snakemake, main)  # noqa: F821
