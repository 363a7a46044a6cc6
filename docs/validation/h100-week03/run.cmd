python3 -m snakemake --profile profiles/local --configfile config/h100-validation-reduced.yaml --replace-workflow-config --cores 16 week03_all
