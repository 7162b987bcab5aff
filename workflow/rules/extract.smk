# One job per local day: the day's readings from the database to Parquet, then its hourly and daily tables.
# Extract and aggregation share a job because each is too small to pay for its own (a job costs ~0.3 s of
# start-up and Snakemake bookkeeping; aggregating a day takes milliseconds).
rule extract_day:
    input:
        database=database_input,
    output:
        readings="results/readings/date={date}/data.parquet",
        hourly="results/tables/hourly/date={date}/data.parquet",
        daily="results/tables/daily/date={date}/data.parquet",
    params:
        code=code_digest("extract_day"),
        sensors=SENSORS,
        # Plausible ranges only: a new display name or unit must not redo the tables.
        validity=VALIDITY,
        timezone=config["timezone"],
        source=DB_PARAMS,
    group:
        "day"
    log:
        "logs/extract_day/{date}.log",
        benchmark="benchmarks/extract_day/{date}.tsv",
    run:
        run_step("extract_day", rule, input, output, params, wildcards, log, config)
