# Stage 4: the analysis notebooks, executed by papermill. Each reads the runs' metrics and
# its own per-run probe files (rules `probe_*`), and writes the tables, figures and variables
# its module declares (TABLES, FIGURES); the site shows those files.
# They only aggregate and plot, so on a cluster they run on the submitting machine (localrule).

# The analyses, in the order the site and the report list them: one rule `<name>_analysis` each,
# generated below. Every analysis reads every run's metrics.json, its notebook
# (workflow/notebooks/<name>.ipynb) and its settings block (analyses.<name> of the config); here
# are what it reads besides, in notebook-parameter order (`probes`: its probe files, `baselines`:
# the datasets' baselines.json, `speed`: the speed benchmark, each passed to the notebook under
# that name; the other inputs are read beside each metrics.json), the modules it runs, and its
# category in Snakemake's report.
ANALYSIS_RULES = {
    "likelihood": {
        "inputs": {
            # read beside each metrics.json: the step ceiling and the dataset's parameter budget
            "summaries": all_runs(f"{RUN}/train.json"),
            "scores": all_runs(f"{RUN}/test_scores.npz"),
            "curves": all_runs(f"{RUN}/curves.csv"),
            "probes": probe_runs("likelihood"),
            # every dataset's sanity baselines (rule baselines) and their per-example test scores
            "baselines": expand("results/{dataset}/baselines.json", dataset=DATASETS),
            "baseline_scores": expand("results/{dataset}/baselines_test_scores.npz", dataset=DATASETS),
        },
        "code": ("likelihood", "comparisons", "figures", "variables"),
        "category": "Likelihood",
    },
    "high_frequency": {
        "inputs": {"probes": probe_runs("high_frequency")},
        "code": ("high_frequency", "runs", "figures", "variables"),
        "category": "High-frequency detail",
    },
    "anomaly": {
        "inputs": {"probes": probe_runs("anomaly")},
        "code": ("anomaly", "runs", "figures", "variables"),
        "category": "Anomaly detection",
    },
    "cost": {
        "inputs": {
            "summaries": all_runs(f"{RUN}/train.json"),
            "timings": all_runs(f"{RUN}/timing.json"),  # wall time and memory
            "curves": all_runs(f"{RUN}/curves.csv"),
            "speed": rules.speed_summary.output.json,
            # every dataset's sanity baselines: reference lines on the validation curves
            "baselines": expand("results/{dataset}/baselines.json", dataset=DATASETS),
        },
        "code": ("cost", "figures", "variables"),
        "category": "Cost",
    },
    "latents": {
        "inputs": {"probes": probe_runs("latents")},
        "code": ("latents", "runs", "figures", "variables"),
        "category": "Latents",
    },
}
ANALYSES = list(ANALYSIS_RULES)
# Snakemake's report: one category per analysis (common.smk, in_report)
REPORT_CATEGORIES = {analysis: spec["category"] for analysis, spec in ANALYSIS_RULES.items()}


for _analysis, _spec in ANALYSIS_RULES.items():

    rule:
        name:
            f"{_analysis}_analysis"
        input:
            notebook=f"workflow/notebooks/{_analysis}.ipynb",
            metrics=all_runs(f"{RUN}/metrics.json"),
            **_spec["inputs"],
            code=code(*(f"vaeflow.analysis.{m}" for m in _spec["code"])),
        output:
            **analysis_outputs(_analysis),
        params:
            metrics=json_list("metrics"),
            **{k: json_list(k) for k in ("probes", "baselines") if k in _spec["inputs"]},
            settings=json.dumps(analysis_settings(config, _analysis), sort_keys=True),
        threads: 1
        resources:
            **job_resources("analysis"),
        localrule: True
        conda:
            CONDA_ENV
        log:
            f"results/logs/notebooks/{_analysis}.log",
        benchmark:
            f"results/benchmarks/rules/{_analysis}_analysis.tsv"
        shell:
            # Snakemake evaluates this again in the job's run function, where `_spec` is the loop's last
            # analysis (latents): there `rule`, the job's rule name, says which analysis it is
            notebook_command(ANALYSIS_RULES[locals().get("rule", f"{_analysis}_analysis").removesuffix("_analysis")]["inputs"])


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
