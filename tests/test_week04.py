"""Week 4 (PagedAttention): the fair HF static-batching tool (its command, checks and parser), the
offline driver's KV and length rows, and - on the one shared embedded-default run - vLLM per
max_num_seqs and per block size against the HF baseline on the very same requests."""

import json

import pandas as pd
import pytest
from conftest import ROOT

from inferlab import theory
from inferlab.engines.vllm import parse_bench_throughput
from inferlab.errors import ConfigError
from inferlab.tools import hf_static_batch

W = "week04"


def _raw(**over):
    d = {
        "backend": "hf-static",
        "device": "cpu",
        "batch_size": 2,
        "elapsed_time": 2.0,
        "requested": {"requests": 3, "prompt_tokens": 30, "output_tokens": 12},
        "achieved": {"requests": 3, "prompt_tokens": 30, "output_tokens": 12},
        "tokens_per_second": 21.0,
        "output_tokens_per_second": 6.0,
        "requests_per_second": 1.5,
        "padding_waste": 0.2,
        "per_batch": [{"rows": 2, "max_output": 6}, {"rows": 1, "max_output": 2}],
        "occupancy": [{"batch": 0, "step": 0, "running": 2}, {"batch": 0, "step": 1, "running": 1}],
    }
    d.update(over)
    return d


def test_hf_parse_rows_and_occupancy():
    rows = {r["metric"]: r["value"] for r in hf_static_batch.parse(_raw())}
    assert rows["offline_output_token_throughput"] == 6.0 and rows["padding_waste"] == 0.2
    assert rows["static_occupancy_mean"] == pytest.approx((1.0 + 0.5) / 2)
    assert set(rows) == {m for m, _ in hf_static_batch.metric_names()}


def test_hf_parse_rejects_short_rows_and_nonsense():
    with pytest.raises(ValueError, match="achieved"):
        hf_static_batch.parse(_raw(achieved={"requests": 3, "prompt_tokens": 30, "output_tokens": 11}))
    with pytest.raises(ValueError, match="tokens_per_second"):
        hf_static_batch.parse(_raw(tokens_per_second=0))


def test_hf_check_and_command(tmp_path):
    with pytest.raises(ConfigError, match="needs a dataset"):
        hf_static_batch.check({"num_prompts": 3}, {}, "f.yaml", "k")
    with pytest.raises(ConfigError, match="random_input_len"):
        hf_static_batch.check({"num_prompts": 3, "dataset_name": "random"}, {}, "f.yaml", "k")
    cmd = hf_static_batch.command("py", "/m", {"num_prompts": 3, "dataset": "sg", "seed": 1}, tmp_path / "o", "/d.json")
    assert cmd[1].endswith("drivers/hf_static.py") and cmd[cmd.index("--dataset") + 1] == "/d.json"
    assert json.loads(cmd[cmd.index("--params") + 1]) == {"num_prompts": 3, "seed": 1}


def test_throughput_parser_kv_and_waste_rows():
    data = {
        "tokens_per_second": 10.0,
        "requests_per_second": 1.0,
        "elapsed_time": 2.0,
        "total_num_tokens": 20,
        "num_requests": 2,
        "achieved": {"requests": 2, "prompt_tokens": 10, "output_tokens": 8},
        "lengths": {"prompt": [5, 5], "output": [4, 4]},
        "kv_cache": {"block_size": 32, "num_gpu_blocks": 100},
    }
    rows = {r["metric"]: r["value"] for r in parse_bench_throughput(data)}
    assert rows["offline_output_token_throughput"] == 4.0 and rows["kv_cache_blocks"] == 100
    assert rows["kv_memory_waste"] == pytest.approx(100 * theory.memory_waste([9, 9], 32))


def _rec(run, path):
    return json.loads((run / "results" / W / path / "cell.json").read_text())


def _rawf(run, path):
    return json.loads((run / "results" / W / path / "raw.json").read_text())


@pytest.mark.engine
def test_hf_and_vllm_run_the_same_requests(shared_run):
    hf = _rawf(shared_run, "hf_baseline/hf/cpu/default/bs16")
    assert _rec(shared_run, "hf_baseline/hf/cpu/default/bs16")["status"] == "ok"
    for conf in ("mns4", "mns16"):
        v = _rawf(shared_run, f"max_num_seqs/vllm/cpu/{conf}/np16")
        assert v["lengths"] == hf["lengths"], conf  # same prompts (token counts) and output lengths
        assert v["achieved"]["prompt_tokens"] == hf["achieved"]["prompt_tokens"]
        assert v["achieved"]["output_tokens"] == hf["achieved"]["output_tokens"]
    assert hf["padding_waste"] == pytest.approx(theory.batches_padding_waste(hf["lengths"]["output"], 16))


@pytest.mark.engine
def test_week04_tables(shared_run):
    t = shared_run / "results" / W / "tables"
    hv = pd.read_csv(t / "hf_vs_vllm.csv", dtype=str)
    assert float(hv.iloc[0, 1].replace(",", "")) > 0
    pv = pd.read_csv(t / "throughput_per_max_num_seqs.csv", dtype=str)
    assert list(pv.columns[1:]) == ["4", "16"] and all(float(x.replace(",", "")) > 0 for x in pv.iloc[0, 1:])
    bl = pd.read_csv(t / "blocks_per_block_size.csv", dtype=str)
    waste = [float(x) for x in bl["Memory waste (%)"]]
    assert len(waste) == 2 and waste[0] < waste[1]  # 32 -> 128 tokens per block
    blocks = [float(x.replace(",", "")) for x in bl["KV blocks"]]
    assert blocks[0] == pytest.approx(4 * blocks[1], rel=0.01)  # fixed KV memory (VLLM_CPU_KVCACHE_SPACE)


def test_week04_plan_on_cpu_uses_cpu_block_sizes(catalog):
    from conftest import load_preset

    from inferlab import matrix

    cfg = load_preset(catalog, weeks=["week04"])
    cells = matrix.expand_week(cfg, "week04")
    confs = {(c.experiment, c.engine, c.configuration) for c in cells}
    assert {x[2] for x in confs if x[0] == "block_size"} == {"blk32", "blk64", "blk128"}
    assert {x[2] for x in confs if x[0] == "max_num_seqs"} == {"mns1", "mns16", "mns64"}
    hf = [c for c in cells if c.engine == "hf"]
    assert len(hf) == 1 and hf[0].tool == "hf_static_batch" and hf[0].skip is None
    # the same requests: the HF cell samples what the vLLM cells sample
    v = next(c for c in cells if c.experiment == "max_num_seqs")
    assert {k: hf[0].params[k] for k in ("dataset", "num_prompts", "seed")} == {
        k: v.params[k] for k in ("dataset", "num_prompts", "seed")
    }


# -- the figure's HF baseline: a line figure's `reference` (one dotted line per GPU, its colour) ----
def _rows(specs):
    out = []
    for s in specs:
        st = s.get("status", "ok")
        for m, v in s["metrics"].items():
            out.append(
                {
                    "week": W,
                    "experiment": s["experiment"],
                    "engine": s.get("engine", "vllm"),
                    "gpu": s["gpu"],
                    "model": "llama-3.1-8b-instruct",
                    "configuration": s.get("configuration", "default"),
                    "cell": s["cell"],
                    "repeat": 0,
                    "tool": s.get("tool", "vllm_bench_throughput"),
                    "metric": m,
                    "value": None if st != "ok" else v,
                    "raw_value": v,
                    "status": st,
                    "reason": s.get("reason"),
                    "valid": True,
                    "invalid_reason": None,
                    "telemetry": "ok",
                    "definition": None,
                    **{f"param_{k}": v for k, v in s["params"].items()},
                }
            )
    df = pd.DataFrame(out)
    df["valid"] = df["valid"].astype("boolean")
    return df


def _figure_ctx(hf_a100_status="ok"):
    from inferlab import config, report
    from inferlab.report import kinds
    from inferlab.report.values import Frame

    cfg = config.load("config/cluster.yaml", base_dir=ROOT)
    doc, _ = report.week_doc(cfg, W)
    report.check(doc)
    m = "offline_output_token_throughput"
    specs = [
        {
            "experiment": "max_num_seqs",
            "gpu": g,
            "configuration": f"mns{n}",
            "cell": "np300",
            "params": {"max_num_seqs": n, "num_prompts": 300},
            "metrics": {m: base * n},
        }
        for g, base in (("h100", 10.0), ("a100", 7.0))
        for n in (1, 16, 64)
    ]
    specs += [
        {
            "experiment": "hf_baseline",
            "engine": "hf",
            "tool": "hf_static_batch",
            "gpu": g,
            "cell": "bs16",
            "params": {"batch_size": 16},
            "metrics": {m: v},
            **({"status": "failed", "reason": "oom"} if g == "a100" and hf_a100_status != "ok" else {}),
        }
        for g, v in (("h100", 123.5), ("a100", 88.25))
    ]
    return kinds.Context(cfg, doc, W, {W: Frame(_rows(specs))}, None), doc


def test_figure_marks_the_hf_baseline_per_gpu_in_its_colour():
    import matplotlib

    from inferlab.report import figures

    matplotlib.use("Agg")
    ctx, doc = _figure_ctx()
    key = "throughput_vs_max_num_seqs"
    fig, missing = figures.render(ctx, key, doc["figures"][key])
    assert missing == []
    (ax,) = fig.get_axes()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for g, v in (("h100", 123.5), ("a100", 88.25)):
        ref = lines[f"HF static bs=16, {g}"]
        assert list(ref.get_ydata()) == [v, v] and ref.get_linestyle() == ":"  # the data's value
        assert ref.get_color() == lines[g].get_color()  # the GPU's colour
    legend = fig.findobj(matplotlib.legend.Legend)[0]
    assert {"HF static bs=16, h100", "HF static bs=16, a100"} <= {t.get_text() for t in legend.get_texts()}
    # a baseline without a number draws no line and is named under the plot
    ctx, doc = _figure_ctx(hf_a100_status="failed")
    fig, missing = figures.render(ctx, key, doc["figures"][key])
    (ax,) = fig.get_axes()
    assert "HF static bs=16, a100" not in {ln.get_label() for ln in ax.get_lines()}
    assert len(missing) == 1 and missing[0].startswith("HF static bs=16, a100: OOM"), missing


@pytest.mark.parametrize(
    "ref,kind,key",
    [
        ({"experiment": "hf_baseline"}, "line", "figures.f.reference"),  # no metric
        ({"metric": "m"}, "line", "figures.f.reference"),  # no experiment / where: which cells?
        ({"experiment": "hf_baseline", "metric": "m", "colour": "red"}, "line", "figures.f.reference"),
        ({"experiment": "hf_baseline", "metric": "m"}, "bar", "figures.f.reference"),
        ({"experiment": "hf_baselin", "metric": "m"}, "line", "figures.f.reference.experiment"),
    ],
)
def test_bad_reference_spec_names_the_key(ref, kind, key):
    from inferlab import report

    doc = {
        "week": W,
        "experiments": {"hf_baseline": {}, "max_num_seqs": {}},
        "figures": {"f": {"kind": kind, "x": "max_num_seqs", "y": "m", "caption": "c", "reference": ref}},
    }
    with pytest.raises(ConfigError) as e:
        report.check(doc, "config/weeks/week04.yaml")
    assert str(e.value).startswith(f"config/weeks/week04.yaml: {key}"), str(e.value)
