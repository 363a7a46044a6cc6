# inferlab: regenerate the course's tables and figures (see README.md).
#
# Path scheme (every output is self-describing; logs mirror outputs under logs/):
#   <cache>/models/{built,hub}/<model>/                      stage 1: a model, built or downloaded
#   <cache>/datasets/[built/]<dataset>/<file>                stage 1: a dataset, sha256-verified or built
#   results/<week>/<experiment>/<engine>/<gpu>/<cell>/cell.json        stage 2: typed cell record
#                                          .../raw.json, engine.log    stage 2: raw output, kept
#                                          .../metrics.parquet         stage 3: normalized rows
#   results/<week>/<experiment>/<engine>/<gpu>/_server/{session.json,server.log,telemetry.csv}
#                                          a serving session: one server for the configuration's cells;
#                                          a serving cell keeps raw.json + client.log, no engine.log
#   results/<week>/{<week>.parquet,report.md,tables/,figures/}         stage 4: the course's tables
#   logs/<same path>/<rule>.log
# A cell id is its swept parameters (bs16, in512, ...). Ask for one cell's path to (re)run it alone.
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
