python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks.yaml --replace-workflow-config --cores 16 measure_week01_serving_sglang_h100_default --forcerun build_model
