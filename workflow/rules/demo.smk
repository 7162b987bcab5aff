rule create_demo_database:
    output:
        config["demo"]["path"],
    params:
        code=code_digest("create_demo_database"),
        seed=config["demo"]["seed"],
    localrule: True
    log:
        "logs/create_demo_database.log",
    run:
        run_step("create_demo_database", rule, input, output, params, wildcards, log, config)
