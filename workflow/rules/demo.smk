rule create_demo_database:
    output:
        config["demo"]["path"],
    params:
        seed=config["demo"]["seed"],
    log:
        "logs/create_demo_database.log",
    conda:
        "../../environment.yml"
    script:
        "../scripts/create_demo_database.py"
