# Stage 4: all of a week's cells -> the course's tables (Markdown + CSV), figures and a report.


rule aggregate_week:
    input:
        week_metrics,
    output:
        report=RESULTS + "/{week}/report.md",
        parquet=RESULTS + "/{week}/{week}.parquet",
        tables=directory(RESULTS + "/{week}/tables"),
        figures=directory(RESULTS + "/{week}/figures"),
    log:
        LOGS + "/{week}/aggregate_week.log",
    params:
        preset=config,
    localrule: True
    script:
        "../workflow/scripts/aggregate_week.py"
