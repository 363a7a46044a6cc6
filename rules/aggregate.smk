# Stage 4: all of a week's cells -> the course's tables (Markdown + CSV + HTML), figures, the course's
# claims judged on the data (claims.csv|html) and a report. `snakemake --report` shows them grouped by
# week: the tables in place (HTML pages: the report shows HTML, images and PDF inline, a CSV only as
# a download), the figures, the claims and report.md, each captioned from the week file. The name
# label comes first: a second label with two values would become a toggle.


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
        report=report(
            f"{RESULTS}/{{week}}/report.md",
            caption="../report/week.rst",
            category="{week}",
            subcategory="report",
            labels={"file": "report.md", "week": "{week}"},
        ),
        parquet=f"{RESULTS}/{{week}}/{{week}}.parquet",
        tables=report(
            directory(f"{RESULTS}/{{week}}/tables"),
            patterns=["{name}.html"],
            caption="../report/table.rst",
            category="{week}",
            subcategory="tables",
            labels={"table": "{name}", "week": "{week}"},
        ),
        figures=report(
            directory(f"{RESULTS}/{{week}}/figures"),
            patterns=["{name}.png"],
            caption="../report/figure.rst",
            category="{week}",
            subcategory="figures",
            labels={"figure": "{name}", "week": "{week}"},
        ),
        claims=report(
            f"{RESULTS}/{{week}}/claims.html",
            caption="../report/claims.rst",
            category="{week}",
            subcategory="claims",
            labels={"table": "claims", "week": "{week}"},
        ),
        claims_csv=f"{RESULTS}/{{week}}/claims.csv",
    log:
        f"{LOGS}/{{week}}/aggregate_week.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        # the preset without `cells` (which cells this run measures says nothing about the tables)
        preset=preset_for_tables(),
        joins=lambda w: week_joins(w.week),
        captions=lambda w: week_captions(w.week),
        table_captions=lambda w: week_table_captions(w.week),
    script:
        "../workflow/scripts/aggregate_week.py"
