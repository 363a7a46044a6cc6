# Stage 4: all of a week's cells -> the course's tables (Markdown + CSV), figures and a report.


rule aggregate_week:
    input:
        metrics=week_metrics,
        code=AGGREGATE_CODE,
        # the table and figure kinds (inferlab.report) and the week's declarations
        report_code=sorted(str(p) for p in (PKG / "report").glob("*.py")),
        week_file=lambda w: CFG.files[w.week],
        joined=lambda w: list(week_joins(w.week).values()),
        reference=sorted(
            str(p) for p in Path(CFG.files["catalog_dir"], "reference").glob("*.yaml")
        ),
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
