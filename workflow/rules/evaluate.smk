# Stage 3: score every trained run on its test set (bits/dim with the bound named).


rule evaluate:
    input:
        checkpoint=f"{RUN}/checkpoint.pt",
        summary=f"{RUN}/train.json",
        data="results/data/{dataset}.npz",
        code=lambda wc: code(f"vaeflow.models.{wc.model}", "vaeflow.evaluation.run"),
    output:
        metrics=f"{RUN}/metrics.json",
        samples=f"{RUN}/samples.npz",
        scores=f"{RUN}/test_scores.npz",
    params:
        settings=lambda wc: json.dumps(evaluation_settings(config, wc.model), sort_keys=True),
        device=config["device"],
    threads: config["threads"]
    resources:
        **job_resources("evaluate"),
    conda:
        CONDA_ENV
    log:
        "results/logs/evaluate/{dataset}/{model}/seed{seed}.log",
    shell:
        "python -m vaeflow evaluate --checkpoint {input.checkpoint} --train-summary {input.summary} "
        "--data {input.data} --settings {params.settings:q} --metrics {output.metrics} "
        "--samples {output.samples} --scores {output.scores} --device {params.device} --threads {threads} > {log} 2>&1"


rule probe:
    # What one analysis needs from one trained run (see vaeflow.probes); the notebooks
    # only aggregate these files.
    input:
        checkpoint=f"{RUN}/checkpoint.pt",
        data="results/data/{dataset}.npz",
        others=lambda wc: list(other_datasets(wc).values()),
        code=lambda wc: code(f"vaeflow.models.{wc.model}", "vaeflow.probes.run", PROBES[wc.probe]),
    output:
        f"{RUN}/probes/{{probe}}.npz",
    params:
        settings=lambda wc: json.dumps(
            probe_settings(config, wc.probe, NOTEBOOK_KEYS[wc.probe]), sort_keys=True
        ),
        others=lambda wc: " ".join(f"--other {name}={path}" for name, path in other_datasets(wc).items()),
        device=config["device"],
    threads: config["threads"]
    resources:
        **job_resources("probe"),
    conda:
        CONDA_ENV
    log:
        "results/logs/probe/{probe}/{dataset}/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/rules/probe/{probe}/{dataset}/{model}/seed{seed}.tsv"
    shell:
        "python -m vaeflow probe {wildcards.probe} --checkpoint {input.checkpoint} --data {input.data} "
        "--settings {params.settings:q} --out {output} {params.others} --device {params.device} "
        "--threads {threads} > {log} 2>&1"


rule baselines:
    # Sanity baselines of one dataset (uniform and independent pixels on images, a fitted
    # Gaussian on real vectors), on the models' splits and in their units (vaeflow.evaluation.baselines).
    input:
        data="results/data/{dataset}.npz",
        manifest="results/data/{dataset}.json",
        code=code("vaeflow.evaluation.baselines"),
    output:
        baselines="results/{dataset}/baselines.json",
        scores="results/{dataset}/baselines_test_scores.npz",
    threads: 1
    resources:
        **job_resources("data"),
    conda:
        CONDA_ENV
    log:
        "results/logs/baselines/{dataset}.log",
    shell:
        "python -m vaeflow baselines --data {input.data} --out {output.baselines} --scores {output.scores} > {log} 2>&1"
