"""Figures legible as published: rendered, every text inside the image (a long "not plotted" note is
wrapped, not cut), legends off the data, log axes ticked 1, 4, 16 (not 1.0), the PNG's size as declared."""

import struct

import matplotlib
import pandas as pd
import pytest
from conftest import DATA, ROOT

from inferlab import config, report
from inferlab.report import figures

matplotlib.use("Agg")
CFG = config.load("config/cluster.yaml", base_dir=ROOT)
MIXED = DATA / "tables-before" / "parquet"


def ctx(week, pq):
    df = pd.read_parquet(pq)
    doc, _ = report.week_doc(CFG, week)
    report.check(doc)
    return report.context(df, CFG, week, {}, doc)


def legend(fig):
    (leg,) = fig.findobj(matplotlib.legend.Legend)  # on the figure, or on its plot's subfigure
    return leg


def texts_inside(fig):
    """Every visible, non-empty text artist's window extent lies inside the figure."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    # tick labels exist for ticks outside the view too; only those drawn count
    ticks, drawn = set(), set()
    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            for tk in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks |= {id(tk.label1), id(tk.label2)}
            for tk in axis._update_ticks():
                drawn |= {id(tk.label1), id(tk.label2)}
    n = 0
    for t in fig.findobj(matplotlib.text.Text):
        if not t.get_visible() or not t.get_text().strip() or (id(t) in ticks and id(t) not in drawn):
            continue
        b = t.get_window_extent(r)
        assert b.x0 >= -1 and b.y0 >= -1 and b.x1 <= W + 1 and b.y1 <= H + 1, (t.get_text()[:60], b, W, H)
        n += 1
    return n


def test_long_note_is_wrapped_inside_the_image_and_the_legend_is_off_the_data():
    c = ctx("week01", MIXED / "week01-mixed.parquet")
    spec = c.doc["figures"]["ttft_vs_rate"]
    fig, missing = figures.render(c, "ttft_vs_rate", spec)
    assert len(missing) == 10  # 8 skipped SGLang cells, an OOM and an engine error
    assert texts_inside(fig) > 10
    note = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().startswith("not plotted")]
    assert len(note) == 1 and note[0].get_text().count("\n") >= 2  # wrapped over several lines
    assert "vllm/a100 rr=10: OOM" in note[0].get_text().replace("\n", " ")
    w, h = fig.get_size_inches()
    assert w == pytest.approx(7) and h > 4.5  # room added under the plot for the note
    r = fig.canvas.get_renderer()
    (ax,) = [a for a in fig.get_axes() if a.get_lines()]
    leg = legend(fig).get_window_extent(r)
    assert not leg.overlaps(ax.get_window_extent(r))  # the legend sits beside the axes, not on the data
    matplotlib.pyplot.close(fig)


def test_log_axis_ticks_are_plain_numbers():
    c = ctx("week03", MIXED / "week03-mixed.parquet")
    fig, _ = figures.render(c, "decode_batch_sweep", c.doc["figures"]["decode_batch_sweep"])
    fig.canvas.draw()
    (ax,) = fig.get_axes()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels == ["1", "4", "16", "64", "128", "256", "512"]
    assert ax.get_xscale() == "log"
    assert any(t.get_text().startswith("AI* ") for t in legend(fig).get_texts())  # the ridge lines
    texts_inside(fig)
    matplotlib.pyplot.close(fig)


def test_stacked_bars_legend_off_the_bars_and_failed_cell_named():
    c = ctx("week02", MIXED / "week02.parquet")
    fig, missing = figures.render(c, "kernel_breakdown", c.doc["figures"]["kernel_breakdown"])
    assert missing == ["a100: FAILED (server_died)"]
    r = fig.canvas.get_renderer()
    fig.canvas.draw()
    ax = next(a for a in fig.get_axes() if a.patches)
    assert [t.get_text() for t in legend(fig).get_texts()] == ["gemm", "attention", "norm_elementwise", "other"]
    assert not legend(fig).get_window_extent(r).overlaps(ax.get_window_extent(r))
    texts_inside(fig)
    matplotlib.pyplot.close(fig)


def test_written_png_has_the_declared_size(tmp_path):
    c = ctx("week03", ROOT / "docs/validation/h100-week03/week03.parquet")
    spec = c.doc["figures"]["prefill_length_sweep"]
    entry = figures.build(c, "prefill_length_sweep", spec, tmp_path)
    png = entry["path"].read_bytes()
    assert png[:4] == b"\x89PNG"
    w, h = struct.unpack(">II", png[16:24])
    assert (w, h) == (7 * figures.DPI, int(4.5 * figures.DPI))  # nothing missing: no note, no resize
    assert entry["caption"] == spec["caption"]


def test_note_is_cut_short_when_very_long():
    items = [f"gpu{i}/engine rr={i}: FAILED (engine_error)" for i in range(200)]
    note = figures.wrap_note(items, 7)
    assert note.count("\n") + 1 == figures.NOTE_LINES and "200 cells in all" in note


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "line", "x": "batch_size", "y": "lpt", "hue": "gpu", "facet": "experiment", "log": {"x": 2}},
        {"kind": "bar", "x": "gpu", "y": "tput", "hue": "batch_size", "xticks": "{gpu}"},
        {"kind": "scatter", "x": "tput", "y": "lpt", "hue": "gpu", "points": ["gpu", "batch_size"]},
        {"kind": "pareto", "x": "tput", "y": "1000 / lpt", "hue": "gpu", "points": ["gpu", "batch_size"]},
    ],
)
def test_every_figure_kind_renders_legibly(spec):
    from test_report_kinds import ctx_of, rows

    specs = []
    for g, base in (("h100", 7.0), ("l40s", 20.0)):
        for bs in (1, 2, 4):
            for r in (1, 2, 3):  # three repeats: error bars
                specs.append(
                    {
                        "experiment": "lat",
                        "gpu": g,
                        "cell": f"bs{bs}-r{r}",
                        "repeat": r,
                        "params": {"batch_size": bs, "input_len": 128, "output_len": 64},
                        "metrics": {"lpt": base * (1 + 0.1 * bs) + 0.1 * r, "tput": 100.0 * bs / base + r},
                    }
                )
    specs.append(
        {
            "experiment": "lat",
            "gpu": "a100",
            "cell": "bs1",
            "params": {"batch_size": 1, "input_len": 128, "output_len": 64},
            "metrics": {"lpt": None, "tput": None},
            "status": "failed",
            "reason": "oom",
        }
    )
    c = ctx_of(rows(specs))
    spec = {**spec, "caption": "c", "title": "a title long enough to matter for the layout of the figure"}
    report.check({"week": "week09", "figures": {"f": spec}})
    fig, missing = figures.render(c, "f", spec)
    assert any("OOM" in m for m in missing)
    assert texts_inside(fig) > 5
    if spec["kind"] == "line":
        fig.canvas.draw()
        assert [t.get_text() for t in fig.get_axes()[0].get_xticklabels() if t.get_text()] == ["1", "2", "4"]
    matplotlib.pyplot.close(fig)
