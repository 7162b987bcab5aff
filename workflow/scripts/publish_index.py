"""Index the receipts in Cloudflare KV within the daily budget, delete unused pins on Pinata, and keep a
record of the run under results/kv/ and counters under results/metrics/."""

import sys

from sensorcharts import log


def main(snakemake):
    from sensorcharts import atomic
    from sensorcharts.indexing import Calendar, Options, Paths, publish_index
    from sensorcharts.providers import RateLimiter, RetryPolicy, Settings
    from sensorcharts.timegrid import parse_now, zone

    upload, publish = snakemake.params.upload, snakemake.params.publish
    record = publish_index(
        list(snakemake.input.receipts),
        Paths(),
        Settings.load(),
        Options(**publish),
        Calendar(zone(snakemake.params.timezone), tuple(snakemake.params.sensors), snakemake.params.lookback_days,
                 parse_now(snakemake.config.get("now"))),
        # Cloudflare allows 1,200 requests per 5 minutes per user; stay well below.
        RateLimiter(180),
        RateLimiter(upload["requests_per_minute"], ".snakemake/pinata-rate"),
        RetryPolicy(upload["max_attempts"], upload["backoff_seconds"], upload["max_backoff_seconds"],
                    upload["timeout_seconds"]),
        log=log,
    )
    atomic.write_json(snakemake.output.index, record)
    written = record["written"]
    log.info("KV %s: %d dated key(s), %d latest; waiting: %s; pins deleted: %d; budget: %s",
             "written" if record["written_to_kv"] else "recorded only (not written)", len(written["dated"]),
             len(written["latest"]), record["deferred"], len(record["pins_deleted"]), record["budget"])
    # Keys waiting for days, a budget too small, Pinata's file quota near: the run says so.
    for note in (record["deferred"].get("note"), record.get("pinata", {}).get("note")):
        if note:
            print(f"{snakemake.rule}: {note}", file=sys.stderr)
