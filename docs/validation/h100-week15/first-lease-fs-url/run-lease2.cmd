python3 -m snakemake --profile profiles/local --configfile config/h100-validation-next.yaml --replace-workflow-config --cores 16 week12_all
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-week15.yaml --replace-workflow-config --cores 16 measure_week15_restart_vllm_lmcache_h100_default
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-next.yaml --replace-workflow-config --cores 16 week07_all
