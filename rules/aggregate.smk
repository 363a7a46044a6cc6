# Stage 4: all of a week's cells -> the course's tables (Markdown + CSV), figures and a report.


rule aggregate_week:
    input:
        metrics=week_metrics,
        code=AGGREGATE_CODE,
        joined=lambda w: list(week_joins(w.week).values()),
        reference=lambda w: [
            f
            for f in [f"{CFG.files['catalog_dir']}/reference/{w.week}.yaml"]
            if Path(f).exists()
        ],
    output:
        report=f"{RESULTS}/{{week}}/report.md",
        parquet=f"{RESULTS}/{{week}}/{{week}}.parquet",
        tables=directory(f"{RESULTS}/{{week}}/tables"),
        figures=report(
            directory(f"{RESULTS}/{{week}}/figures"),
            patterns=["{name}.png"],
            caption="../report/figure.rst",
            category="{week}",
            labels={"week": "{week}", "figure": "{name}"},
        ),
    log:
        f"{LOGS}/{{week}}/aggregate_week.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        preset=config,
        joins=lambda w: week_joins(w.week),
        captions=lambda w: week_captions(w.week),
    script:
        "../workflow/scripts/aggregate_week.py"
