# Stage 4: the analysis notebooks, executed by papermill. Each reads the runs' metrics and
# its own per-run probe files (rule `probe`), and writes the tables, figures and variables
# its module declares (TABLES, FIGURES); the site shows those files.


ANALYSES = ["likelihood", "high_frequency", "anomaly", "cost", "latents"]


def analysis_outputs(analysis):
    """The files an analysis notebook writes, from its module's TABLES and FIGURES."""
    declared = importlib.import_module(f"vaeflow.analysis.{analysis}")
    return {
        "notebook": f"results/notebooks/{analysis}.ipynb",
        "tables": [f"results/tables/{stem}{ext}" for stem in declared.TABLES for ext in (".csv", ".md")],
        "figures": [f"results/figures/{stem}{ext}" for stem in declared.FIGURES for ext in (".vl.json", ".svg", ".png")],
        "variables": f"results/variables/{analysis}.yml",
    }


def notebook_command(analysis, probes=True):
    """The papermill call of one analysis notebook, with the common parameters."""
    return (
        f"python -m vaeflow notebook {{input.notebook}} {{output.notebook}} "
        f"-p metrics={{params.metrics:q}} " + ("-p probes={params.probes:q} " if probes else "")
        + "-p settings={params.settings:q} -p tables_dir='\"results/tables\"' "
        "-p figures_dir='\"results/figures\"' -p variables_out='\"{output.variables}\"' > {log} 2>&1"
    )


rule likelihood_analysis:
    input:
        notebook="workflow/notebooks/likelihood.ipynb",
        metrics=all_runs(f"{RUN}/metrics.json"),
        scores=all_runs(f"{RUN}/test_scores.npz"),
        curves=all_runs(f"{RUN}/curves.csv"),
        probes=probe_runs("likelihood"),
        code=code("vaeflow.analysis.likelihood", "vaeflow.analysis.figures", "vaeflow.analysis.variables"),
    output:
        **analysis_outputs("likelihood"),
    params:
        metrics=lambda wc, input: json.dumps(list(input.metrics)),
        probes=lambda wc, input: json.dumps(list(input.probes)),
        settings=json.dumps(analysis_settings(config, "likelihood"), sort_keys=True),
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/likelihood.log",
    shell:
        notebook_command("likelihood")


rule high_frequency_analysis:
    input:
        notebook="workflow/notebooks/high_frequency.ipynb",
        metrics=all_runs(f"{RUN}/metrics.json"),
        probes=probe_runs("high_frequency"),
        code=code("vaeflow.analysis.high_frequency", "vaeflow.analysis.runs", "vaeflow.analysis.figures",
                  "vaeflow.analysis.variables"),
    output:
        **analysis_outputs("high_frequency"),
    params:
        metrics=lambda wc, input: json.dumps(list(input.metrics)),
        probes=lambda wc, input: json.dumps(list(input.probes)),
        settings=json.dumps(analysis_settings(config, "high_frequency"), sort_keys=True),
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/high_frequency.log",
    shell:
        notebook_command("high_frequency")


rule anomaly_analysis:
    input:
        notebook="workflow/notebooks/anomaly.ipynb",
        metrics=all_runs(f"{RUN}/metrics.json"),
        probes=probe_runs("anomaly"),
        code=code("vaeflow.analysis.anomaly", "vaeflow.analysis.runs", "vaeflow.analysis.figures", "vaeflow.analysis.variables"),
    output:
        **analysis_outputs("anomaly"),
    params:
        metrics=lambda wc, input: json.dumps(list(input.metrics)),
        probes=lambda wc, input: json.dumps(list(input.probes)),
        settings=json.dumps(analysis_settings(config, "anomaly"), sort_keys=True),
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/anomaly.log",
    shell:
        notebook_command("anomaly")


rule latents_analysis:
    input:
        notebook="workflow/notebooks/latents.ipynb",
        metrics=all_runs(f"{RUN}/metrics.json"),
        probes=probe_runs("latents"),
        code=code("vaeflow.analysis.latents", "vaeflow.analysis.runs", "vaeflow.analysis.figures", "vaeflow.analysis.variables"),
    output:
        **analysis_outputs("latents"),
    params:
        metrics=lambda wc, input: json.dumps(list(input.metrics)),
        probes=lambda wc, input: json.dumps(list(input.probes)),
        settings=json.dumps(analysis_settings(config, "latents"), sort_keys=True),
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/latents.log",
    shell:
        notebook_command("latents")


rule cost_analysis:
    input:
        notebook="workflow/notebooks/cost.ipynb",
        metrics=all_runs(f"{RUN}/metrics.json"),
        summaries=all_runs(f"{RUN}/train.json"),
        curves=all_runs(f"{RUN}/curves.csv"),
        code=code("vaeflow.analysis.cost", "vaeflow.analysis.figures", "vaeflow.analysis.variables"),
    output:
        **analysis_outputs("cost"),
    params:
        metrics=lambda wc, input: json.dumps(list(input.metrics)),
        settings=json.dumps(analysis_settings(config, "cost"), sort_keys=True),
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/cost.log",
    shell:
        notebook_command("cost", probes=False)


rule variables:
    input:
        expand("results/variables/{analysis}.yml", analysis=ANALYSES),
    output:
        "results/variables.yml",
    conda:
        CONDA_ENV
    log:
        "results/logs/variables.log",
    shell:
        "python -m vaeflow variables {input} --output {output} > {log} 2>&1"
