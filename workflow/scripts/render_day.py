"""A local day's daily and hourly images of every sensor, plus their metadata."""

from dataclasses import asdict
from pathlib import Path

from sensorcharts import atomic, log


def main(snakemake):
    from sensorcharts.charts import render_day, sensors_from_config
    from sensorcharts.tables import read_readings
    from sensorcharts.timegrid import parse_date, zone

    day = parse_date(snakemake.wildcards.date)
    # Paths follow results/images/{sensor}/{interval}/{stamp}.png; the declared outputs say which to draw.
    daily = {Path(p).parts[-3]: p for p in snakemake.output.daily}
    hourly = {(Path(p).parts[-3], Path(p).stem): p for p in snakemake.output.hourly}
    metas = render_day(
        read_readings(snakemake.input.readings),
        day,
        zone(snakemake.params.timezone),
        sensors_from_config(snakemake.params.sensors),
        daily,
        hourly,
    )
    atomic.write_json(snakemake.output.metadata, [asdict(m) for m in metas])
    log.info("%s: %d images", day, len(metas))
