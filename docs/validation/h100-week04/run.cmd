python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks3.yaml --replace-workflow-config --cores 16 week04_all
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks3.yaml --replace-workflow-config --cores 16 week08_all
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks3.yaml --replace-workflow-config --cores 16 measure_week06_radix_vllm_analogue_vllm_h100_apc measure_week06_radix_vllm_analogue_vllm_h100_noapc measure_week09_policy_vllm_analogue_vllm_h100_schedfcfs measure_week09_policy_vllm_analogue_vllm_h100_schedpriority
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks3.yaml --replace-workflow-config --cores 16 week06_all
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks3.yaml --replace-workflow-config --cores 16 week09_all
