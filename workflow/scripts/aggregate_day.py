"""Hourly and daily statistics of one local day."""

from sensorcharts.jobs import log, run
from sensorcharts.tables import aggregate, read_readings, write_atomic
from sensorcharts.timegrid import parse_date, zone


def main(snakemake):
    day = parse_date(snakemake.wildcards.date)
    hourly, daily = aggregate(read_readings(snakemake.input.readings), day, zone(snakemake.params.timezone))
    write_atomic(hourly, snakemake.output.hourly)
    write_atomic(daily, snakemake.output.daily)
    log.info("%s: %d hourly rows, %d daily rows", day, hourly.num_rows, daily.num_rows)


if "snakemake" in globals():
    run(snakemake, main)  # noqa: F821
