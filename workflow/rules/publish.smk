# Upload the charts, then index them in Cloudflare KV. A day in the cron window is uploaded chart by chart (its
# charts change every few minutes); a finished day as one IPFS folder: one file on Pinata, one request. Each
# upload job writes one receipts file (a receipt per chart inside): Snakemake checks every input of a job
# for each of its outputs, so a file per chart cost thousands of checks per job. Today's new hour chart still
# redoes the day's upload job, its charts deleted or not: the job's list of inputs changed ("input" trigger).
# Upload jobs hold one unit of the `pinata` resource (the profile caps it) and share one request budget.
UPLOAD_PARAMS = dict(
    config["upload"],
    uploading=PUBLISH.uploads_enabled,
    group=PUBLISH.pinata_group_id,
)

for kind, (labels, date_re) in DAY_KINDS.items():

    rule:
        name:
            f"upload_day_{kind}"
        input:
            images=charts(labels)["daily"] + charts(labels)["hourly"],
            metadata="results/metadata/day/{date}.json",
        output:
            receipts=receipts_file("day"),
        wildcard_constraints:
            date=date_re,
        params:
            code=code_digest("upload_charts"),
            upload=UPLOAD_PARAMS,
        group:
            "day"
        resources:
            pinata=1,
        log:
            "logs/upload_day/{date}.log",
        run:
            run_step("upload_charts", rule, input, output, params, wildcards, log, config)

    if kind == "today":  # today is never finished
        continue

    rule:
        name:
            f"upload_folder_{kind}"
        input:
            images=[p for paths in charts(labels).values() for p in paths],
            metadata=["results/metadata/day/{date}.json", "results/metadata/cumulative/{date}.json"],
        output:
            receipts=receipts_file("folder"),
        wildcard_constraints:
            date=date_re,
        params:
            code=code_digest("upload_folder"),
            upload=UPLOAD_PARAMS,
        # With the heatmaps it packs: its inputs are the day's charts and heatmaps, which come before it.
        group:
            "cumulative"
        resources:
            pinata=1,
        log:
            "logs/upload_folder/{date}.log",
        run:
            run_step("upload_folder", rule, input, output, params, wildcards, log, config)


rule upload_cumulative:
    input:
        images=charts(())["cumulative"],
        metadata="results/metadata/cumulative/{date}.json",
    output:
        receipts=receipts_file("cumulative"),
    params:
        code=code_digest("upload_charts"),
        upload=UPLOAD_PARAMS,
    group:
        "cumulative"
    resources:
        pinata=1,
    log:
        "logs/upload_cumulative/{date}.log",
    run:
        run_step("upload_charts", rule, input, output, params, wildcards, log, config)


rule publish_range:
    input:
        receipts=requested_receipts,
        due=index_due(PLAN.days),
    output:
        index="results/kv/range.json",
    params:
        code=code_digest("publish_index"),
        upload=UPLOAD_PARAMS,
        publish=PUBLISH_OPTIONS,
        timezone=config["timezone"],
        sensors=SENSORS,
        lookback_days=config["lookback_days"],
    localrule: True
    resources:
        kv=1,
    log:
        "logs/publish_index/range.log",
    run:
        run_step("publish_index", rule, input, output, params, wildcards, log, config)


rule publish_recent:
    input:
        receipts=recent_receipts,
        due=index_due(PLAN.recent_days),
    output:
        index="results/kv/recent.json",
    params:
        code=code_digest("publish_index"),
        upload=UPLOAD_PARAMS,
        publish=PUBLISH_OPTIONS,
        timezone=config["timezone"],
        sensors=SENSORS,
        lookback_days=config["lookback_days"],
    localrule: True
    resources:
        kv=1,
    log:
        "logs/publish_index/recent.log",
    run:
        run_step("publish_index", rule, input, output, params, wildcards, log, config)
