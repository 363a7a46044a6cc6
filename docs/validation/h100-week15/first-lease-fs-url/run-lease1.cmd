python3 -m snakemake --profile profiles/local --configfile config/h100-validation-next.yaml --replace-workflow-config --cores 16 week02_all
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-week15.yaml --replace-workflow-config --cores 16 measure_week15_restart_vllm_lmcache_h100_default measure_week15_chunk_sweep_vllm_lmcache_h100_chunk_size256 measure_week15_chunk_sweep_vllm_lmcache_h100_chunk_size1024 measure_week15_offload_native_vllm_h100_default
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-next.yaml --replace-workflow-config --cores 16 week12_all
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-next.yaml --replace-workflow-config --cores 16 week07_all
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-week15.yaml --replace-workflow-config --cores 16 week15_all
