# Stage 2, serving: one session job per server configuration (week, experiment, engine, GPU).
# The job starts the engine's server once (own process group, free port, readiness = alive +
# /health + deadline), runs the configuration's cells one at a time with the engine's own load
# client, tears the server down and writes one typed record per cell. Why a session job and not
# service() outputs: see src/inferlab/session.py. Its outputs are the records of the cells this
# run measures: all of them, or with `--config cells=<path>` only the named ones (rerun one cell
# without touching its siblings). Resources as for bench_cell; site settings in the profile.

for _key, _cells in SESSIONS.items():

    rule:
        name:
            session_name(_key)
        input:
            model=model_dir(_cells[0].model),
            dataset=dataset_path(_cells[0].params["dataset"]),
        output:
            records=[f"{RESULTS}/{c.path}/cell.json" for c in _cells],
        log:
            f"{LOGS}/{'/'.join(_key)}/serve_engine.log",
        conda:
            "../envs/workflow.yaml"
        threads: 2
        resources:
            gpu=gpu_count(_key[3]),
            runtime=session_runtime_min(_cells),
            mem_mb=CFG.preset["serving_job"]["mem_mb"],
            cpus_per_task=CFG.preset["serving_job"]["cpus"],
            slurm_partition=CFG.gpu(_key[3])["partition"],
            gpu_model=gpu_model(_key[3]),
        params:
            spec=session_spec(_key),
        script:
            "../workflow/scripts/serve_engine.py"
