# Stage 2: one job per engine configuration (week, experiment, engine, GPU, server-axis point).
# The job starts the engine once and measures the configuration's cells one after another:
# serving tools against one server (own process group, free port, readiness = alive + /health +
# deadline, prefix cache reset between cells), offline tools through one in-process engine (the
# driver follows vllm bench latency/throughput), or the tool's CLI per cell where no driver exists.
# Every cell gets a typed record; a configuration that cannot run here (needs more GPUs than the
# preset's, a layout without a runner) types its cells skipped without starting anything.
# Outputs are the records of the cells this run measures: all of them, or with
# `--config cells=<path>` only the named ones (rerun one cell, siblings untouched).
# Resources from the configuration's layout; site settings (account, QoS) in the profile.
for _key, _cells in CONFIGURATIONS.items():

    rule:
        name:
            configuration_name(_key)
        input:
            model=model_dir(_cells[0].model),
            datasets=configuration_datasets(_cells),
            refs=list(configuration_model_refs(_cells).values()),
        output:
            records=[f"{RESULTS}/{c.path}/cell.json" for c in _cells],
        log:
            f"{LOGS}/{'/'.join(_key)}/measure_configuration.log",
        conda:
            "../envs/workflow.yaml"
        threads: 2
        resources:
            gpu=configuration_gpus(_cells),
            runtime=configuration_runtime_min(_cells),
            mem_mb=CFG.preset["serving_job"]["mem_mb"],
            cpus_per_task=CFG.preset["serving_job"]["cpus"],
            slurm_partition=CFG.gpu(_key[3])["partition"],
            gpu_model=gpu_model(_key[3]),
        params:
            spec=configuration_spec(_key),
        script:
            "../workflow/scripts/measure_configuration.py"
