# Upload each render job's charts (one receipt per chart), then index the receipts in Cloudflare KV.
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
            images=charts("images", "png", labels)["daily"] + charts("images", "png", labels)["hourly"],
            metadata="results/metadata/day/{date}.json",
        output:
            receipts=charts("receipts", "json", labels)["daily"] + charts("receipts", "json", labels)["hourly"],
        wildcard_constraints:
            date=date_re,
        params:
            code=code_digest("upload_charts", "publish", "cid"),
            upload=UPLOAD_PARAMS,
        resources:
            pinata=1,
        log:
            "logs/upload_day/{date}.log",
        run:
            run_step("upload_charts", rule, input, output, params, wildcards, log, config)


rule upload_cumulative:
    input:
        images=charts("images", "png", ())["cumulative"],
        metadata="results/metadata/cumulative/{date}.json",
    output:
        receipts=charts("receipts", "json", ())["cumulative"],
    params:
        code=code_digest("upload_charts", "publish", "cid"),
        upload=UPLOAD_PARAMS,
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
    resources:
        kv=1,
    log:
        "logs/publish_index/recent.log",
    run:
        run_step("publish_index", rule, input, output, params, wildcards, log, config)
