# Stage 4: all of a week's cells -> the course's tables (Markdown + CSV), figures and a report.


rule aggregate_week:
    input:
        metrics=week_metrics,
        code=AGGREGATE_CODE,
        reference=lambda w: [
            f
            for f in [f"{CFG.files['catalog_dir']}/reference/{w.week}.yaml"]
            if Path(f).exists()
        ],
    output:
        report=RESULTS + "/{week}/report.md",
        parquet=RESULTS + "/{week}/{week}.parquet",
        tables=directory(RESULTS + "/{week}/tables"),
        figures=directory(RESULTS + "/{week}/figures"),
    log:
        LOGS + "/{week}/aggregate_week.log",
    localrule: True
    params:
        preset=config,
    script:
        "../workflow/scripts/aggregate_week.py"
