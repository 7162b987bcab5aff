rule extract_day:
    input:
        database=database_input,
    output:
        readings="results/readings/date={date}/data.parquet",
    params:
        code=code_digest("extract_day", "database", "settings"),
        sensors=SENSORS,
        timezone=config["timezone"],
        source=DB_PARAMS,
    log:
        "logs/extract_day/{date}.log",
    benchmark:
        "benchmarks/extract_day/{date}.tsv"
    conda:
        "../../environment.yml"
    script:
        "../scripts/extract_day.py"
