"""Upload a day's charts in the cron window to IPFS through Pinata, one by one, and write their receipts."""

from sensorcharts import log


def main(snakemake):
    from sensorcharts import atomic
    from sensorcharts.providers import RateLimiter, RetryPolicy, Settings
    from sensorcharts.uploads import charts_of_job, upload_charts

    options = snakemake.params.upload
    receipts, counts = upload_charts(
        charts_of_job(snakemake.input.images, [snakemake.input.metadata]),
        "results/pinned",
        Settings.load(),
        RateLimiter(options["requests_per_minute"], ".snakemake/pinata-rate"),
        RetryPolicy(options["max_attempts"], options["backoff_seconds"], options["max_backoff_seconds"],
                    options["timeout_seconds"]),
        threads=options["threads"],
        log=log,
    )
    atomic.write_json(snakemake.output.receipts, receipts)
    log.info("%d charts: %s", len(receipts), counts)
