python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks2.yaml --replace-workflow-config --cores 16 measure_week10_modes_vllm_h100_compiled measure_week10_modes_vllm_h100_graphs
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks2.yaml --replace-workflow-config --cores 16 week04_all
python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks2.yaml --replace-workflow-config --cores 16 week08_all
