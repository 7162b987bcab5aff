"""Upload a finished day's charts to IPFS through Pinata as one folder, and write their receipts."""

from sensorcharts import log


def main(snakemake):
    from sensorcharts import atomic
    from sensorcharts.providers import RateLimiter, RetryPolicy, Settings
    from sensorcharts.uploads import charts_of_job, upload_folder

    options = snakemake.params.upload
    receipts, counts = upload_folder(
        charts_of_job(snakemake.input.images, snakemake.input.metadata),
        snakemake.wildcards.date,
        "results/pinned",
        Settings.load(),
        RateLimiter(options["requests_per_minute"], ".snakemake/pinata-rate"),
        RetryPolicy(options["max_attempts"], options["backoff_seconds"], options["max_backoff_seconds"],
                    options["timeout_seconds"]),
        log=log,
    )
    atomic.write_json(snakemake.output.receipts, receipts)
    root = next(iter(receipts.values()))["root_cid"] if receipts else None
    log.info("%s: %d charts in folder %s: %s", snakemake.wildcards.date, len(receipts), root, counts)
