# Thin adapter: rule build_dataset -> inferlab.download.build_sharegpt (a generated ShareGPT file),
# inferlab.train.arithmetic_sharegpt, or inferlab.download.build_lengths (format custom: vLLM's JSONL).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import download  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    spec = sm.params.spec
    if spec["format"] == "custom":  # Week 7's declared output lengths (vLLM's custom dataset)
        bad = download.lengths_spec_errors(spec)
        if bad:
            raise ValueError(
                "; ".join(f"config/datasets.yaml: datasets.{sm.wildcards.dataset}.{k}: {m}" for k, m in bad)
            )
        download.build_lengths(sm.output[0], spec["prompts"], spec["input_len"], spec["output_lens"], spec["seed"])
        print(f"built {spec['prompts']} prompts, output lengths cycling {spec['output_lens']} -> {sm.output[0]}")
    elif spec["format"] != "sharegpt":
        raise ValueError(f"no builder for dataset format {spec['format']!r}")
    elif spec.get("task", "chat") == "arithmetic":  # the trained models' held-out questions
        from inferlab import train

        train.arithmetic_sharegpt(
            sm.output[0], spec["conversations"], spec["seed"], spec["max_operand"], spec["eval_fraction"]
        )
        print(f"built {spec['conversations']} conversations -> {sm.output[0]}")
    else:
        download.build_sharegpt(sm.output[0], spec["conversations"], spec.get("seed", 0))
        print(f"built {spec['conversations']} conversations -> {sm.output[0]}")
