# Stage 4: the analysis notebooks, executed by papermill. Each reads the runs' metrics and
# its own per-run probe files (rules `probe_*`), and writes the tables, figures and variables
# its module declares (TABLES, FIGURES); the site shows those files.
# They only aggregate and plot, so on a cluster they run on the submitting machine (localrule).


rule likelihood_analysis:
    input:
        notebook="workflow/notebooks/likelihood.ipynb",
        metrics=all_runs(f"{RUN}/metrics.json"),
        # read beside each metrics.json: the step ceiling and the dataset's parameter budget
        summaries=all_runs(f"{RUN}/train.json"),
        scores=all_runs(f"{RUN}/test_scores.npz"),
        curves=all_runs(f"{RUN}/curves.csv"),
        probes=probe_runs("likelihood"),
        # every dataset's sanity baselines (rule baselines) and their per-example test scores
        baselines=expand("results/{dataset}/baselines.json", dataset=DATASETS),
        baseline_scores=expand("results/{dataset}/baselines_test_scores.npz", dataset=DATASETS),
        code=code("vaeflow.analysis.likelihood", "vaeflow.analysis.comparisons", "vaeflow.analysis.figures",
                  "vaeflow.analysis.variables"),
    output:
        **analysis_outputs("likelihood"),
    params:
        metrics=lambda wc, input: json.dumps(list(input.metrics)),
        probes=lambda wc, input: json.dumps(list(input.probes)),
        baselines=lambda wc, input: json.dumps(list(input.baselines)),
        settings=json.dumps(analysis_settings(config, "likelihood"), sort_keys=True),
    threads: 1
    resources:
        **job_resources("analysis"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/likelihood.log",
    benchmark:
        "results/benchmarks/rules/likelihood_analysis.tsv"
    shell:
        notebook_command("likelihood", extra="-p baselines={params.baselines:q} ")


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
    threads: 1
    resources:
        **job_resources("analysis"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/high_frequency.log",
    benchmark:
        "results/benchmarks/rules/high_frequency_analysis.tsv"
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
    threads: 1
    resources:
        **job_resources("analysis"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/anomaly.log",
    benchmark:
        "results/benchmarks/rules/anomaly_analysis.tsv"
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
    threads: 1
    resources:
        **job_resources("analysis"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/latents.log",
    benchmark:
        "results/benchmarks/rules/latents_analysis.tsv"
    shell:
        notebook_command("latents")


rule cost_analysis:
    input:
        notebook="workflow/notebooks/cost.ipynb",
        metrics=all_runs(f"{RUN}/metrics.json"),
        summaries=all_runs(f"{RUN}/train.json"),
        timings=all_runs(f"{RUN}/timing.json"),  # read beside each metrics.json: wall time and memory
        curves=all_runs(f"{RUN}/curves.csv"),
        speed=rules.speed_summary.output.json,
        # every dataset's sanity baselines: reference lines on the validation curves
        baselines=expand("results/{dataset}/baselines.json", dataset=DATASETS),
        code=code("vaeflow.analysis.cost", "vaeflow.analysis.figures", "vaeflow.analysis.variables"),
    output:
        **analysis_outputs("cost"),
    params:
        metrics=lambda wc, input: json.dumps(list(input.metrics)),
        baselines=lambda wc, input: json.dumps(list(input.baselines)),
        settings=json.dumps(analysis_settings(config, "cost"), sort_keys=True),
    threads: 1
    resources:
        **job_resources("analysis"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/notebooks/cost.log",
    benchmark:
        "results/benchmarks/rules/cost_analysis.tsv"
    shell:
        notebook_command("cost", probes=False, extra="-p speed='\"{input.speed}\"' -p baselines={params.baselines:q} ")


rule variables:
    input:
        expand("results/variables/{analysis}.yml", analysis=ANALYSES),
    output:
        "results/variables.yml",
    threads: 1
    resources:
        **job_resources("analysis"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/variables.log",
    shell:
        "python -m vaeflow variables {input} --output {output} > {log} 2>&1"
