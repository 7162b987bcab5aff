"""Upload one render job's charts to IPFS through Pinata and write a receipt per chart."""

import json
from pathlib import Path

from sensorcharts.jobs import log


def main(snakemake):
    from sensorcharts.publish import Chart, RateLimiter, RetryPolicy, Settings, upload_charts

    options = snakemake.params.upload
    metadata = {(m["sensor_type"], m["interval"], m["stamp"]): m
                for m in json.loads(Path(snakemake.input.metadata).read_text())}
    charts = []
    for png, receipt in zip(snakemake.input.images, snakemake.output.receipts):
        # Both lists follow results/{images,receipts}/{sensor}/{interval}/{stamp}.*, in the same order.
        png, receipt = Path(png), Path(receipt)
        assert receipt.parts[-3:-1] == png.parts[-3:-1] and receipt.stem == png.stem, (png, receipt)
        charts.append(Chart(png, receipt, metadata[(png.parts[-3], png.parts[-2], png.stem)]))
    counts = upload_charts(
        charts,
        "results/pinned",
        Settings.load(),
        RateLimiter(options["requests_per_minute"], ".snakemake/pinata-rate"),
        RetryPolicy(options["max_attempts"], options["backoff_seconds"], options["max_backoff_seconds"],
                    options["timeout_seconds"]),
        threads=options["threads"],
        log=log,
    )
    log.info("%d charts: %s", len(charts), counts)
