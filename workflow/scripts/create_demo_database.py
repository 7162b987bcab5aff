"""Create the synthetic demo SQLite database (see sensorcharts.demo)."""

from sensorcharts import log


def main(snakemake):
    from sensorcharts.demo import create_demo_database

    rows = create_demo_database(snakemake.output[0], seed=snakemake.params.seed)
    log.info("wrote %d readings to %s", rows, snakemake.output[0])
