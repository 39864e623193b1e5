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
    params:
        settings=lambda wc: json.dumps(evaluation_settings(config, wc.model), sort_keys=True),
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    log:
        "results/logs/evaluate/{dataset}/{model}/seed{seed}.log",
    shell:
        "python -m vaeflow evaluate --checkpoint {input.checkpoint} --train-summary {input.summary} "
        "--data {input.data} --settings {params.settings:q} --metrics {output.metrics} "
        "--samples {output.samples} --device {params.device} --threads {threads} > {log} 2>&1"
