# A day's daily and hourly images of every sensor come from one job (starting Python costs more than a
# chart). Rule outputs are fixed patterns, so days whose hours differ from T00..T23 (DST days, today so
# far) get a rule of their own per set of hour labels; the date constraints keep the rules disjoint.
for kind, (labels, dates) in {
    "ordinary": (None, None),
    **RENDER_KINDS,
}.items():

    rule:
        name:
            f"render_day_{kind}"
        input:
            readings="results/readings/date={date}/data.parquet",
        output:
            daily=expand("results/images/{sensor}/daily/{{date}}.png", sensor=SENSORS),
            hourly=expand(
                "results/images/{sensor}/hourly/{{date}}{label}.png",
                sensor=SENSORS,
                label=labels or [f"T{h:02d}" for h in range(24)],
            ),
            metadata="results/metadata/day/{date}.json",
        wildcard_constraints:
            date="|".join(dates) if dates else ORDINARY_DATE_RE,
        params:
            code=code_digest("render_day", "charts", "tables"),
            timezone=config["timezone"],
            sensors=config["sensors"],
        log:
            "logs/render_day/{date}.log",
        benchmark:
            "benchmarks/render_day/{date}.tsv"
        conda:
            "../../environment.yml"
        script:
            "../scripts/render_day.py"


rule render_cumulative:
    input:
        hourly=window_hourly_tables,
    output:
        images=expand("results/images/{sensor}/cumulative/{{date}}.png", sensor=SENSORS),
        metadata="results/metadata/cumulative/{date}.json",
    params:
        code=code_digest("render_cumulative", "charts"),
        timezone=config["timezone"],
        sensors=config["sensors"],
        window=config["cumulative_days"],
    log:
        "logs/render_cumulative/{date}.log",
    benchmark:
        "benchmarks/render_cumulative/{date}.tsv"
    conda:
        "../../environment.yml"
    script:
        "../scripts/render_cumulative.py"
