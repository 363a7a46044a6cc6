# inferlab: regenerate the course's tables and figures (see README.md).
#
# Path scheme (every output is self-describing; logs mirror outputs under logs/):
#   <cache>/models/{built,hub}/<model>/                      stage 1: a model, built or downloaded
#   <cache>/datasets/[built/]<dataset>/<file>                stage 1: a dataset, sha256-verified or built
#   results/<week>/<experiment>/<engine>/<gpu>/<configuration>/<cell>/cell.json   stage 2: typed record
#                                          .../raw.json [, client.log]   stage 2: raw output, kept
#                                          .../metrics.parquet           stage 3: its rows (a cache)
#   results/<week>/_extract/metrics.parquet  stage 3: the week's normalized rows (one job per week)
#   results/<week>/<experiment>/<engine>/<gpu>/<configuration>/_engine/
#       configuration.json (timings), engine.log | server.log, driver-spec.json, progress.jsonl,
#       session.json, telemetry.csv        one job and one engine start for the configuration's cells
#   results/<week>/{<week>.parquet,report.md,tables/,figures/}         stage 4: the course's tables
#   logs/<same path>/<rule>.log
# <configuration> names the swept server arguments (apc / noapc, mnbt512, tp2; "default" when the
# experiment sweeps nothing on the server); <cell> names the swept tool parameters (bs16, in512,
# rr4; -r2 per repeat). One job per configuration: measure_<week>_<experiment>_<engine>_<gpu>_<configuration>.
# Rerun one cell alone: --config cells=<week>/<experiment>/<engine>/<gpu>/<configuration>/<cell>.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/measure.smk"
include: "rules/extract.smk"
include: "rules/aggregate.smk"


rule all:
    default_target: True
    input:
        [week_outputs(w) for w in WEEKS],


for _week in WEEKS:

    rule:
        name:
            f"{_week}_all"
        input:
            week_outputs(_week),


onsuccess:
    print(done_message())


onerror:
    type_killed_cells()
