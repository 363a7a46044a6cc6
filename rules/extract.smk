# Stage 3: a cell's record (+ raw output) -> normalized Parquet rows (docs/schema.md), with the
# roofline guard applied.


rule extract_metrics:
    input:
        record=f"{CELL_DIR}/cell.json",
        code=EXTRACT_CODE,
    output:
        f"{CELL_DIR}/metrics.parquet",
    log:
        f"{CELL_LOG}/extract_metrics.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        gpu=lambda w: CFG.gpu(w.gpu),
        model=lambda w: CFG.model(cell_of(w).model),
    script:
        "../workflow/scripts/extract_metrics.py"
