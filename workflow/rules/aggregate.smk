rule aggregate_day:
    input:
        readings="results/readings/date={date}/data.parquet",
    output:
        hourly="results/tables/hourly/date={date}/data.parquet",
        daily="results/tables/daily/date={date}/data.parquet",
    params:
        code=code_digest("aggregate_day", "tables"),
        timezone=config["timezone"],
        sensors=config["sensors"],
    log:
        "logs/aggregate_day/{date}.log",
    benchmark:
        "benchmarks/aggregate_day/{date}.tsv"
    conda:
        "../../environment.yml"
    script:
        "../scripts/aggregate_day.py"
