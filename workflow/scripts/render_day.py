"""A local day's daily and hourly images of every sensor, plus their metadata."""

from dataclasses import asdict

from sensorcharts import atomic, log


def main(snakemake):
    from sensorcharts.chartcache import ChartCache
    from sensorcharts.chartid import ChartId
    from sensorcharts.charts import render_day, sensors_from_config
    from sensorcharts.tables import read_readings
    from sensorcharts.timegrid import parse_date, zone

    day, tz = parse_date(snakemake.wildcards.date), zone(snakemake.params.timezone)
    # The declared outputs say which charts to draw.
    daily = {ChartId.from_path(p).sensor: p for p in snakemake.output.daily}
    hourly_paths = list(snakemake.output.hourly)
    hourly = {(c.sensor, c.stamp): p for p, c in zip(hourly_paths, map(ChartId.from_path, hourly_paths))}
    metas = render_day(
        read_readings(snakemake.input.readings),
        day,
        tz,
        sensors_from_config(snakemake.params.sensors),
        daily,
        hourly,
        ChartCache.for_job("day", day, tz, snakemake.config),
    )
    atomic.write_json(snakemake.output.metadata, [asdict(m) for m in metas])
    drawn = sum(m.drawn for m in metas)
    log.info("%s: %d images, %d drawn, %d unchanged (copied from the chart cache)", day, len(metas), drawn,
             len(metas) - drawn)


def warm(snakemake):
    """Run by the warm job server once it has handed this job to its child: draws the day's time axes in
    the server, so that the render jobs of the next days start with them (charts.warm_day)."""
    from sensorcharts.charts import warm_day
    from sensorcharts.timegrid import parse_date, zone

    warm_day(parse_date(snakemake.wildcards.date), zone(snakemake.params.timezone))
