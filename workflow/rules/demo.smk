rule create_demo_database:
    output:
        config["demo"]["path"],
    params:
        seed=config["demo"]["seed"],
    localrule: True
    log:
        "logs/create_demo_database.log",
    run:
        run_step("create_demo_database", rule, input, output, params, wildcards, log, config)
