"""Tables and figures as data: a week file declares them (``tables:``, ``figures:``), this package
builds them from the week's Parquet.

- :mod:`.kinds`: table kinds (pivot, metrics, compare, vs_theory, vs_reference, pareto, custom);
- :mod:`.columns`: what a table row's column can show (a metric, a field, a theory quantity, an
  expression, a comparison against a baseline level), every one showing a failed cell's status;
- :mod:`.figures`: figure kinds (line, bar, scatter, pareto);
- :mod:`.custom`: named custom tables (Week 1's saturation point);
- :mod:`.claims`: the course's claims (``claims:``) judged on the data: agrees / disagrees / cannot tell;
- :mod:`.html`: a table as an HTML page (what ``snakemake --report`` shows inline);
- :mod:`.reference`: the course's published numbers, one flat shape for every week, guarded;
- :mod:`.stats`: repeats: mean, 95% Student-t interval, coefficient of variation;
- :mod:`.values`: axes, levels and cells of the week's Parquet;
- :mod:`.spec`: checking the declarations (src/inferlab/schemas/report.schema.yaml).

README "How to add a week" shows the declarations.
"""

from .build import build, context, week_doc
from .spec import captions, check, rst_text, table_captions

__all__ = ["build", "captions", "check", "context", "rst_text", "table_captions", "week_doc"]
