# Thin adapter: rule build_dataset -> inferlab.download.build_sharegpt (a generated ShareGPT file).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821
from inferlab import download  # noqa: E402
from inferlab.smk import logged  # noqa: E402

sm = snakemake  # noqa: F821
with logged(sm.log[0]):
    spec = sm.params.spec
    if spec["format"] != "sharegpt":
        raise ValueError(f"no builder for dataset format {spec['format']!r}")
    if spec.get("task", "chat") == "arithmetic":  # the trained models' held-out questions
        from inferlab import train

        train.arithmetic_sharegpt(
            sm.output[0], spec["conversations"], spec["seed"], spec["max_operand"], spec["eval_fraction"]
        )
    else:
        download.build_sharegpt(sm.output[0], spec["conversations"], spec.get("seed", 0))
    print(f"built {spec['conversations']} conversations -> {sm.output[0]}")
