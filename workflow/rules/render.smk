# A day's daily and hourly images of every sensor come from one job (starting Python costs more than a
# chart); one rule per set of hour labels (see DAY_KINDS in common.smk).
for kind, (labels, date_re) in DAY_KINDS.items():

    rule:
        name:
            f"render_day_{kind}"
        input:
            readings="results/readings/date={date}/data.parquet",
        output:
            daily=chart_outputs(charts(labels)["daily"]),
            hourly=chart_outputs(charts(labels)["hourly"]),
            metadata="results/metadata/day/{date}.json",
        wildcard_constraints:
            date=date_re,
        params:
            code=code_digest("render_day"),
            timezone=config["timezone"],
            sensors=config["sensors"],
        group:
            "day"
        log:
            "logs/render_day/{date}.log",
            benchmark="benchmarks/render_day/{date}.tsv",
        run:
            run_step("render_day", rule, input, output, params, wildcards, log, config)


# Heatmaps are the filler work: a cumulative job (~0.4 s) starts only when no other job is ready, so the
# day jobs (~3.5 s each) all start early and a backfill does not end on one busy core. (Snakemake's greedy
# scheduler otherwise prefers jobs with larger inputs: the heatmaps' 30 tables, the uploads' 75 charts.)
rule render_cumulative:
    input:
        hourly=window_hourly_tables,
    output:
        images=chart_outputs(charts(())["cumulative"]),
        metadata="results/metadata/cumulative/{date}.json",
    params:
        code=code_digest("render_cumulative"),
        timezone=config["timezone"],
        sensors=config["sensors"],
        window=config["cumulative_days"],
    priority: -1
    group:
        "cumulative"
    log:
        "logs/render_cumulative/{date}.log",
        benchmark="benchmarks/render_cumulative/{date}.tsv",
    run:
        run_step("render_cumulative", rule, input, output, params, wildcards, log, config)
