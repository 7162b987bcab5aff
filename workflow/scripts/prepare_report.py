"""The report's own pages for the requested days: chart labels, statistics tables, receipts, chart links."""

from sensorcharts import atomic, log


def main(snakemake):
    from sensorcharts import report
    from sensorcharts.timegrid import zone

    tz = zone(snakemake.params.timezone)
    sensors = snakemake.params.sensors
    metas = report.read_metadata(snakemake.input.metadata)
    index = report.chart_index(metas, tz)
    atomic.write_json(snakemake.output.index, index)
    atomic.write_text(snakemake.output.statistics,
                      report.statistics_page(snakemake.input.daily, snakemake.input.hourly, sensors, tz))
    atomic.write_text(snakemake.output.published,
                      report.published_page(snakemake.input.receipts, sensors, tz, snakemake.params.charts_kept))
    if snakemake.params.charts_kept:
        linked = report.link_charts(metas, snakemake.output.charts)
    else:  # charts are deleted after their upload: no links, and none left from a run that kept them
        linked = 0
        report.drop_links(report.LINKS_FOLDER)
    log.info("%d charts labelled, %d linked for the report, %d receipts", len(index), linked,
             len(snakemake.input.receipts))
