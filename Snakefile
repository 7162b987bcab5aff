# Sensor readings (UTC, in a SQL database) -> per-local-day Parquet -> hourly/daily tables -> charts.
# See README.md and docs/ for the contract (paths, config, database) and config/README.md for every setting.

from snakemake.utils import min_version

# The version tested, which environment.yml pins: sensorcharts/snakemake_patches.py relies on its internals.
min_version("9.27.1")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/publish.smk"
include: "workflow/rules/report.smk"


# Every chart of the requested range, uploaded (or recorded) and indexed, and the pages of the report.
rule all:
    default_target: True
    input:
        requested_receipts,
        requested_charts,
        "results/kv/range.json",
        "results/report/charts.json",


# The cron target: today (hours so far) and the look-back days, with their cumulative images.
rule latest:
    input:
        recent_receipts,
        "results/kv/recent.json",
