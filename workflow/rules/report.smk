# What `snakemake --report results/report.html` shows besides Snakemake's run statistics: one job per run
# turns the requested days' metadata, tables and receipts into report pages (sensorcharts/report.py).
# Charts are marked for the report only when they are kept: report() on a temp() chart makes --report fail
# once the upload has deleted it. Deleted charts are reached through the Publishing page's IPFS links.
from sensorcharts import report as report_pages

REPORT_CHARTS = (
    {}
    if DELETE_CHARTS
    else dict(
        charts=report(
            directory("results/report/charts"),
            patterns=[report_pages.CHART_LINK],
            caption="../report/chart.rst",
            category=lambda wildcards: config["sensors"][wildcards.sensor]["display_name"],
            subcategory=lambda wildcards: report_pages.INTERVALS[wildcards.interval],
            labels=lambda wildcards, output: report_pages.labels_for(output.index, wildcards),
        )
    )
)


rule prepare_report:
    input:
        metadata=report_metadata,
        daily=report_tables("daily"),
        hourly=report_tables("hourly"),
        receipts=requested_receipts,
    output:
        **REPORT_CHARTS,
        index="results/report/charts.json",
        statistics=report(
            "results/report/statistics.html",
            caption="../report/statistics.rst",
            category="Tables",
        ),
        published=report(
            "results/report/published.html",
            caption="../report/published.rst",
            category="Publishing",
        ),
    params:
        code=code_digest("prepare_report"),
        timezone=config["timezone"],
        sensors=config["sensors"],
        charts_kept=not DELETE_CHARTS,
    localrule: True
    log:
        "logs/prepare_report.log",
    run:
        run_step("prepare_report", rule, input, output, params, wildcards, log, config)
