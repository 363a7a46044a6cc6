python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks.yaml --replace-workflow-config --cores 16 measure_week05_apc_vllm_h100_noapc
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks.yaml --replace-workflow-config --cores 16 measure_week05_kv_capacity_vllm_h100_kvbf16
