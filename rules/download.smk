# Stage 1: models and datasets, pinned and cached once (a second run finds them and does nothing).


rule download_model:
    output:
        directory(f"{CACHE}/models/hub/{{model}}"),
    log:
        f"{LOGS}/download/model_{{model}}.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        repo_id=lambda w: CFG.model(w.model)["repo_id"],
        revision=lambda w: CFG.model(w.model)["revision"],
    script:
        "../workflow/scripts/download_model.py"


rule build_model:
    # The embedded default has no hub: the tiny model is built here and stands where a download
    # would, so the DAG keeps its shape. Runs in the engine's environment (torch, transformers).
    output:
        directory(f"{CACHE}/models/built/{{model}}"),
    log:
        f"{LOGS}/download/build_{{model}}.log",
    conda:
        "../envs/vllm-cpu.yaml"
    params:
        spec=lambda w: json.dumps(
            {
                **CFG.model(w.model)["architecture"],
                "weights": CFG.model(w.model)["weights"],
                "seed": 0,
            }
        ),
        python=lambda w: str(
            Path(CFG.preset["engines"]["vllm"]["env"]) / "bin" / "python"
        ),
        src=str(Path(workflow.basedir) / "src"),
    shell:
        "PYTHONPATH={params.src} {params.python} -m inferlab.tinymodel --out {output} "
        "--spec {params.spec:q} > {log} 2>&1"


rule train_model:
    # Catalog source `train` (tiny-llama-trained and its draft): the tiny Llama trained a few CPU
    # minutes on arithmetic with checkable answers, with the tokenizer of a built catalog model
    # (`train.tokenizer`); held-out greedy accuracy in train.json, the splits in eval/train.jsonl.
    # Runs in the engine's environment (torch, transformers); cached like any download.
    input:
        tokenizer=lambda w: model_dir(CFG.model(w.model)["train"]["tokenizer"]),
    output:
        directory(f"{CACHE}/models/trained/{{model}}"),
    log:
        f"{LOGS}/download/train_{{model}}.log",
    conda:
        "../envs/vllm-cpu.yaml"
    threads: 2
    params:
        spec=lambda w: json.dumps(
            {
                **CFG.model(w.model)["architecture"],
                **CFG.model(w.model)["train"],
            }
        ),
        python=lambda w: str(
            Path(CFG.preset["engines"]["vllm"]["env"]) / "bin" / "python"
        ),
        src=str(Path(workflow.basedir) / "src"),
    shell:
        "PYTHONPATH={params.src} {params.python} -m inferlab.train --out {output} "
        "--tokenizer {input.tokenizer} --spec {params.spec:q} > {log} 2>&1"


rule eagle_model:
    # Catalog source `eagle` (Week 11's EAGLE head on the embedded default): a one-layer EAGLE head
    # for the catalog model `eagle.target`, trained briefly on the frozen target's hidden states
    # (inferlab.eagle); its offline agreement with the target's greedy token in eagle.json. Runs in
    # the engine's environment (torch, transformers); cached like any download.
    input:
        target=lambda w: model_dir(CFG.model(w.model)["eagle"]["target"]),
    output:
        directory(f"{CACHE}/models/eagle/{{model}}"),
    log:
        f"{LOGS}/download/eagle_{{model}}.log",
    conda:
        "../envs/vllm-cpu.yaml"
    threads: 2
    params:
        spec=lambda w: json.dumps(eagle_spec(w.model)),
        python=lambda w: str(
            Path(CFG.preset["engines"]["vllm"]["env"]) / "bin" / "python"
        ),
        src=str(Path(workflow.basedir) / "src"),
    shell:
        "PYTHONPATH={params.src} {params.python} -m inferlab.eagle --out {output} "
        "--target {input.target} --spec {params.spec:q} > {log} 2>&1"


rule quantize_model:
    # Week 12's quantized variants (catalog source: quantize): llm-compressor round-to-nearest on a
    # catalog model (the trained tiny model on the embedded default), no calibration data; runs in
    # .venv-quant (llm-compressor, layered on the engine environment).
    input:
        base=lambda w: model_dir(CFG.model(w.model)["quantize"]["base"]),
    output:
        directory(f"{CACHE}/models/quantized/{{model}}"),
    log:
        f"{LOGS}/download/quantize_{{model}}.log",
    conda:
        "../envs/quant.yaml"
    params:
        scheme=lambda w: CFG.model(w.model)["quantize"]["scheme"],
        group=lambda w: CFG.model(w.model)["quantize"].get("group_size", 32),
        python=str(Path(workflow.basedir) / ".venv-quant" / "bin" / "python"),
        src=str(Path(workflow.basedir) / "src"),
    shell:
        "PYTHONPATH={params.src} {params.python} -m inferlab.quantize --base {input.base} --out {output} "
        "--scheme {params.scheme} --group-size {params.group} > {log} 2>&1"


rule download_dataset:
    output:
        f"{CACHE}/datasets/{{dataset}}/{{filename}}",
    log:
        f"{LOGS}/download/dataset_{{dataset}}_{{filename}}.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        url=lambda w: CFG.datasets[w.dataset]["url"],
        sha256=lambda w: CFG.datasets[w.dataset]["sha256"],
    script:
        "../workflow/scripts/download_dataset.py"


rule build_dataset:
    # The embedded default has no hub: a ShareGPT-format file is generated here and stands where
    # the download would (same format, same client code path).
    output:
        f"{CACHE}/datasets/built/{{dataset}}/{{filename}}",
    log:
        f"{LOGS}/download/build_dataset_{{dataset}}_{{filename}}.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        spec=lambda w: CFG.datasets[w.dataset],
    script:
        "../workflow/scripts/build_dataset.py"
