"""Hourly and daily statistics of one local day."""

from sensorcharts.jobs import log, run


def main(snakemake):
    from sensorcharts.tables import aggregate, read_readings, validity_from_config, write_atomic
    from sensorcharts.timegrid import parse_date, zone

    day = parse_date(snakemake.wildcards.date)
    # The plausible ranges (config sensors.*.valid_min/valid_max/out_of_range); a `sensors` param, when the
    # rule has one, makes a change of them redo the tables.
    sensors = snakemake.params.get("sensors", None) or snakemake.config["sensors"]
    hourly, daily = aggregate(read_readings(snakemake.input.readings), day, zone(snakemake.params.timezone),
                              validity_from_config(sensors))
    write_atomic(hourly, snakemake.output.hourly)
    write_atomic(daily, snakemake.output.daily)
    log.info("%s: %d hourly rows, %d daily rows", day, hourly.num_rows, daily.num_rows)


if "snakemake" in globals():
    run(snakemake, "aggregate_day")  # noqa: F821
