# Stage 3: every cell record of a week (+ its raw output) -> normalized Parquet rows
# (docs/schema.md), roofline guard applied, in one in-process job per week (incremental: a cell
# whose record, catalog entries and extraction code are unchanged is read back from its cache).


rule extract_week:
    input:
        records=week_records,
        code=EXTRACT_CODE,
    output:
        f"{RESULTS}/{{week}}/_extract/metrics.parquet",
    log:
        f"{LOGS}/{{week}}/extract_week.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        models=lambda w: {c.model: CFG.model(c.model) for c in week_cells(w.week)},
        gpus=lambda w: {c.gpu: CFG.gpu(c.gpu) for c in week_cells(w.week)},
    script:
        "../workflow/scripts/extract_week.py"
