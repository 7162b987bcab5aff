"""Cumulative day-by-hour heatmaps of every sensor for the window ending on one local day."""

from dataclasses import asdict

from sensorcharts import atomic, log

HOURLY_COLUMNS = ["sensor", "local_date", "hour", "count", "mean"]  # what the heatmaps use


def main(snakemake):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sensorcharts.chartcache import ChartCache
    from sensorcharts.chartid import ChartId
    from sensorcharts.charts import render_cumulative, sensors_from_config
    from sensorcharts.timegrid import parse_date, zone

    day, tz = parse_date(snakemake.wildcards.date), zone(snakemake.params.timezone)
    # Days without readings have no table here (see window_hourly_tables); a window of none is all "No data".
    tables = [pq.read_table(p, columns=HOURLY_COLUMNS) for p in snakemake.input.hourly]
    hourly = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=HOURLY_COLUMNS)
    paths = {ChartId.from_path(p).sensor: p for p in snakemake.output.images}
    metas = render_cumulative(
        hourly,
        day,
        tz,
        snakemake.params.window,
        sensors_from_config(snakemake.params.sensors),
        paths,
        ChartCache.for_job("cumulative", day, tz, snakemake.config),
    )
    atomic.write_json(snakemake.output.metadata, [asdict(m) for m in metas])
    drawn = sum(m.drawn for m in metas)
    log.info("%s: %d cumulative images over %d days, %d drawn, %d unchanged (copied from the chart cache)", day,
             len(metas), snakemake.params.window, drawn, len(metas) - drawn)
