"""Extract one local day of readings from the database to Parquet, then its hourly and daily tables."""

from sensorcharts import log


def main(snakemake):
    from sensorcharts import atomic
    from sensorcharts.database import Source, extract_day
    from sensorcharts.settings import database_url
    from sensorcharts.tables import aggregate, read_readings, validity_from_config
    from sensorcharts.timegrid import parse_date, parse_now, query_bounds, zone

    day = parse_date(snakemake.wildcards.date)
    tz = zone(snakemake.params.timezone)
    # Today ends at now (config `now`, else this job's clock): readings stamped in the future wait for their
    # time, exactly as in the day's fingerprint.
    now = parse_now(snakemake.config.get("now"))
    start, end = query_bounds(day, tz, now)
    # The `source` param (table and columns) is there to redo extracts when they change; the timeouts come
    # from the config, since changing how long to wait must not redo anything.
    source = Source.from_config(database_url(snakemake.config), snakemake.config["database"])
    rows = extract_day(source, snakemake.params.sensors, start, end, snakemake.output.readings)
    log.info("%s: %d readings in UTC [%s, %s)", day, rows, start.isoformat(), end.isoformat())

    # The tables count valid readings only: finite, and inside the sensor's plausible range (`validity`).
    hourly, daily = aggregate(read_readings(snakemake.output.readings), day, tz,
                              validity_from_config(snakemake.params.validity))
    atomic.write_parquet(snakemake.output.hourly, hourly)
    atomic.write_parquet(snakemake.output.daily, daily)
    log.info("%s: %d hourly rows, %d daily rows", day, hourly.num_rows, daily.num_rows)
