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


# The probes of one run: what each analysis needs from it (see vaeflow.probes), all computed in one
# process (torch's start-up, the checkpoint and the data paid once per run). Each probe still writes
# its own file, so an analysis reads only its own; a probe whose settings and code are unchanged is
# restored from its memo (vaeflow.probes.run), so a change to one probe's settings recomputes only
# that probe. (Snakemake plans before jobs run, so it still reruns the run's other analyses'
# notebooks, which read unchanged files: seconds each.)
# One rule per block of runs that run the same probes (probe_blocks).
for _index, (_probes, _datasets, _models) in enumerate(probe_blocks()):

    rule:
        name:
            probe_rule_name(_probes, _index, probe_blocks())
        input:
            checkpoint=f"{RUN}/checkpoint.pt",
            data="results/data/{dataset}.npz",
            others=lambda wc, probes=_probes: list(other_datasets(wc, probes).values()),
            code=lambda wc, probes=_probes: [
                code(f"vaeflow.models.{wc.model}", "vaeflow.probes.run", PROBES[p])[0] for p in probes
            ],
        output:
            **{p: f"{RUN}/probes/{p}.npz" for p in _probes},
        wildcard_constraints:
            dataset="|".join(_datasets),
            model="|".join(_models),
        params:
            settings=json.dumps(
                {p: probe_settings(config, p, NOTEBOOK_KEYS[p]) for p in _probes}, sort_keys=True
            ),
            outs=" ".join(f"--out {p}={RUN}/probes/{p}.npz" for p in _probes),
            codes=lambda wc, input, probes=_probes: " ".join(
                f"--code {p}={path}" for p, path in zip(probes, input.code)
            ),
            others=lambda wc, probes=_probes: " ".join(
                f"--other {name}={path}" for name, path in other_datasets(wc, probes).items()
            ),
            device=config["device"],
        threads: config["threads"]
        resources:
            **job_resources("probe"),
        conda:
            CONDA_ENV
        log:
            "results/logs/probe/{dataset}/{model}/seed{seed}.log",
        benchmark:
            "results/benchmarks/rules/probe/{dataset}/{model}/seed{seed}.tsv"
        shell:
            "python -m vaeflow probe --checkpoint {input.checkpoint} --data {input.data} "
            "--settings {params.settings:q} {params.outs} {params.codes} {params.others} "
            "--device {params.device} --threads {threads} > {log} 2>&1"


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
