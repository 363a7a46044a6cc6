python3 -m snakemake --profile profiles/local --configfile config/h100-validation-rest.yaml --replace-workflow-config --cores 16 week01_all week03_all
