"""Per-week aggregation: the course's tables and figures for one week, built from its Parquet.

A week module exposes ``aggregate(df, cfg, outdir) -> list[dict]`` (the tables it wrote, for the
report) and writes its figures under ``outdir/figures``.
"""

from . import week01, week03

WEEKS = {"week01": week01, "week03": week03}
