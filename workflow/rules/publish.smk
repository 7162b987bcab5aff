# Upload each render job's charts, with one receipts file per upload job (a receipt per chart inside), then
# index the receipts in Cloudflare KV. One file per job, not per chart: Snakemake records every output file
# with a checksum check of every input, so 75 receipt files of 75 charts cost 5,700 checks per job, and
# twice the files made a 365-day dry-run take twice as long (33 s, now 16 s). Today's new hour chart still
# redoes the job, its charts deleted or not: the job's list of inputs changed ("input" rerun trigger).
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
            code=code_digest("upload_charts", "publish", "cid"),
            upload=UPLOAD_PARAMS,
        group:
            "day"
        resources:
            pinata=1,
        log:
            "logs/upload_day/{date}.log",
        run:
            run_step("upload_charts", rule, input, output, params, wildcards, log, config)


rule upload_cumulative:
    input:
        images=charts(())["cumulative"],
        metadata="results/metadata/cumulative/{date}.json",
    output:
        receipts=receipts_file("cumulative"),
    params:
        code=code_digest("upload_charts", "publish", "cid"),
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
    output:
        index="results/kv/range.json",
    params:
        code=code_digest("publish_index", "publish"),
        upload=UPLOAD_PARAMS,
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
    output:
        index="results/kv/recent.json",
    params:
        code=code_digest("publish_index", "publish"),
        upload=UPLOAD_PARAMS,
    localrule: True
    resources:
        kv=1,
    log:
        "logs/publish_index/recent.log",
    run:
        run_step("publish_index", rule, input, output, params, wildcards, log, config)
