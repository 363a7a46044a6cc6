python3 -m snakemake --profile profiles/local --configfile config/h200-validation.yaml --replace-workflow-config --cores 16 week11_all
python3 -m snakemake --profile profiles/local --configfile config/h200-validation.yaml --replace-workflow-config --cores 16 week07_all
