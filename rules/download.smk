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
