# Stage 2: train every (dataset, model, seed). The inputs include the source files the
# model and the engine run, so editing one model's module reruns only that model. A
# model trained by density distillation (IAF on images) also takes its teacher's checkpoint.
# Before it trains, a job removes the run's results computed from its old checkpoint (rules
# evaluate and probe), so an interrupted retrain never leaves them looking current.


def computed_from_checkpoint(wildcards):
    """The run's evaluation outputs and its probes folder, as ``--invalidate`` arguments."""
    paths = [*rules.evaluate.output, os.path.dirname(rules.probe.output[0])]
    return " ".join(f"--invalidate {p.format(**wildcards)}" for p in paths)


rule train:
    input:
        data="results/data/{dataset}.npz",
        manifest="results/data/{dataset}.json",
        code=lambda wc: code(f"vaeflow.models.{wc.model}", "vaeflow.training.engine"),
        teacher=teacher_checkpoint,
    output:
        checkpoint=f"{RUN}/checkpoint.pt",
        curves=f"{RUN}/curves.csv",
        summary=f"{RUN}/train.json",
    params:
        run=run_settings,
        out_dir=lambda wc, output: os.path.dirname(output.checkpoint),
        device=config["device"],
        teacher=lambda wc, input: f"--teacher {input.teacher}" if input.teacher else "",
        invalidate=computed_from_checkpoint,
    threads: config["threads"]
    resources:
        **job_resources("train"),
    conda:
        CONDA_ENV
    log:
        "results/logs/train/{dataset}/{model}/seed{seed}.log",
    shell:
        "python -m vaeflow train --run {params.run:q} --data {input.data} --out-dir {params.out_dir} "
        "{params.teacher} {params.invalidate} --device {params.device} --threads {threads} > {log} 2>&1"
