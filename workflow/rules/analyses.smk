# Stage 4: the analysis notebooks, executed by papermill; their tables, figures and
# variables are the files the site shows.


rule likelihood_analysis:
    input:
        notebook="workflow/notebooks/likelihood.ipynb",
        metrics=all_runs(f"{RUN}/metrics.json"),
        curves=all_runs(f"{RUN}/curves.csv"),
        code=code("vaeflow.analysis.likelihood", "vaeflow.analysis.figures", "vaeflow.analysis.variables"),
    output:
        notebook="results/notebooks/likelihood.ipynb",
        table=multiext("results/tables/likelihood", ".csv", ".md"),
        models=multiext("results/tables/models", ".csv", ".md"),
        figure=multiext("results/figures/learning_curves", ".vl.json", ".svg", ".png"),
        variables="results/variables/likelihood.yml",
    params:
        metrics=lambda wc, input: json.dumps(list(input.metrics)),
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/likelihood.log",
    shell:
        "python -m vaeflow notebook {input.notebook} {output.notebook} "
        "-p metrics={params.metrics:q} -p table_out='\"results/tables/likelihood\"' "
        "-p models_table_out='\"results/tables/models\"' "
        "-p figure_out='\"results/figures/learning_curves\"' "
        "-p variables_out='\"{output.variables}\"' > {log} 2>&1"


rule variables:
    input:
        "results/variables/likelihood.yml",
    output:
        "results/variables.yml",
    conda:
        CONDA_ENV
    log:
        "results/logs/variables.log",
    shell:
        "python -m vaeflow variables {input} --output {output} > {log} 2>&1"
