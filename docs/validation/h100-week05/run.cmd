python3 -m snakemake --profile profiles/local --configfile config/h100-validation-weeks.yaml --replace-workflow-config --cores 16 week01_all week10_all week05_all
