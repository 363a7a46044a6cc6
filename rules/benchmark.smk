# Stage 2: one job per cell. Resources are declared here; the partition comes from the GPU's
# config entry and the account/QoS/gres names from the profile.


rule bench_cell:
    input:
        model=cell_model_dir,
        dataset=cell_dataset,
    output:
        record=f"{CELL_DIR}/cell.json",
    log:
        f"{CELL_LOG}/bench_cell.log",
    wildcard_constraints:
        experiment="|".join(OFFLINE_EXPERIMENTS) or "(?!)",
    conda:
        "../envs/workflow.yaml"
    threads: 2
    resources:
        gpu=cell_gpus,
        runtime=cell_runtime_min,
        mem_mb=16000,
        slurm_partition=cell_partition,
        gpu_model=cell_gpu_model,
    params:
        spec=cell_spec,
    script:
        "../workflow/scripts/bench_cell.py"
