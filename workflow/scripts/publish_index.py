"""Index uploaded charts in Cloudflare KV (dated keys and `latest`), keeping a record under results/kv/."""

from sensorcharts.jobs import log, write_json_atomic


def main(snakemake):
    from sensorcharts.publish import RateLimiter, RetryPolicy, Settings, publish_index

    options = snakemake.params.upload
    record = publish_index(
        list(snakemake.input.receipts),
        "results/kv/state.json",
        Settings.load(),
        # Cloudflare allows 1,200 requests per 5 minutes per user; stay well below.
        RateLimiter(180),
        RetryPolicy(options["max_attempts"], options["backoff_seconds"], options["max_backoff_seconds"],
                    options["timeout_seconds"]),
        log=log,
    )
    write_json_atomic(record, snakemake.output.index)
    log.info("%d KV keys %s", record["keys"], "written" if record["written_to_kv"] else "recorded only")
