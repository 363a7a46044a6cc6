"""Per-week aggregation: the course's tables and figures for one week, built from its Parquet.

A week module exposes ``aggregate(df, cfg, outdir) -> list[dict]`` (the tables it wrote, for the
report) and writes its figures under ``outdir/figures``.
"""

from . import week01, week02, week03

WEEKS = {"week01": week01, "week02": week02, "week03": week03}
# weeks whose tables join another week's Parquet (stage 4 reads it when that week is in the run)
JOINS = {"week02": ["week01"]}
