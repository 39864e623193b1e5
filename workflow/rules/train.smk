# Stage 2: train every (dataset, model, seed). The inputs include the source files the
# model and the engine run, so editing one model's module reruns only that model. A
# model trained by density distillation (IAF on images) also takes its teacher's checkpoint.
# While it trains, a job sets aside the run's results computed from its old outputs (rules evaluate
# and probe), so an interrupted retrain never leaves them looking current; they come back only if
# the retrain writes the same bytes (vaeflow.training.superseded).


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
        timing=f"{RUN}/timing.json",  # wall time and peak memory, apart from what was computed
    params:
        run=run_settings,
        out_dir=lambda wc, output: os.path.dirname(output.checkpoint),
        device=config["device"],
        teacher=lambda wc, input: f"--teacher {input.teacher}" if input.teacher else "",
        computed_from_run=computed_from_run,
    threads: config["threads"]
    resources:
        **job_resources("train"),
    conda:
        CONDA_ENV
    log:
        "results/logs/train/{dataset}/{model}/seed{seed}.log",
    shell:
        "python -m vaeflow train --run {params.run:q} --data {input.data} --out-dir {params.out_dir} "
        "{params.teacher} {params.computed_from_run} --device {params.device} --threads {threads} > {log} 2>&1"
