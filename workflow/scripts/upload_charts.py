"""Upload one render job's charts to IPFS through Pinata and write their receipts, one file for the job."""

import json
from pathlib import Path

from sensorcharts.jobs import log, write_json_atomic


def main(snakemake):
    from sensorcharts.publish import Chart, RateLimiter, RetryPolicy, Settings, upload_charts

    options = snakemake.params.upload
    metadata = {(m["sensor_type"], m["interval"], m["stamp"]): m
                for m in json.loads(Path(snakemake.input.metadata).read_text())}
    # Images follow results/images/{sensor}/{interval}/{stamp}.png.
    charts = [Chart(png, metadata[(png.parts[-3], png.parts[-2], png.stem)])
              for png in map(Path, snakemake.input.images)]
    receipts, counts = upload_charts(
        charts,
        "results/pinned",
        Settings.load(),
        RateLimiter(options["requests_per_minute"], ".snakemake/pinata-rate"),
        RetryPolicy(options["max_attempts"], options["backoff_seconds"], options["max_backoff_seconds"],
                    options["timeout_seconds"]),
        threads=options["threads"],
        log=log,
    )
    write_json_atomic(receipts, snakemake.output.receipts)
    log.info("%d charts: %s", len(charts), counts)
