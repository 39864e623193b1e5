# The speed benchmark the cost page shows (benchmarks/speed.py): each model of the study at its
# configured size against the same family from a peer library, interleaved in one process. One
# job per model, so editing one model's source reruns only that model's part; each job holds
# every core (threads: all of them; on a cluster, a node of its own), so no other job runs beside
# it and competes for the machine, while torch itself runs on one thread inside, as every job of the study does.

rule speed_benchmark:
    input:
        data=lambda wc: expand("results/data/{dataset}.npz", dataset=benchmark_datasets(wc.model)),
        runner="benchmarks/speed.py",
        peers="benchmarks/peers.py",
        code=lambda wc: code(f"vaeflow.models.{wc.model}", "vaeflow.training.engine", "vaeflow.config", "vaeflow.data.store",
                             "vaeflow.models.capacity"),
    output:
        "results/benchmarks/speed/{model}.json",
    params:
        study=lambda wc: benchmark_study(wc.model),
        reps=config["benchmark"]["reps"],
        min_time=config["benchmark"]["min_time_s"],
        examples=config["benchmark"]["examples"],
    threads: all_cores()
    resources:
        **job_resources("benchmark"),
        # on a cluster the job has the node to itself (locally it holds every core instead)
        slurm_extra="--exclusive",
    conda:
        CONDA_ENV
    log:
        "results/logs/speed_benchmark/{model}.log",
    shell:
        "python benchmarks/speed.py --config {params.study:q} --only {wildcards.model} --data-dir results/data "
        "--reps {params.reps} --min-time {params.min_time} --examples {params.examples} --threads 1 "
        "--json {output} > {log} 2>&1"


rule speed_summary:
    input:
        parts=expand("results/benchmarks/speed/{model}.json", model=MODELS_IN_STUDY),
        runner="benchmarks/speed.py",
    output:
        json="results/benchmarks/speed.json",
        summary="results/benchmarks/speed.md",
    params:
        out_dir=lambda wc, output: os.path.dirname(output.json),
    threads: 1
    resources:
        **job_resources("analysis"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/speed_summary.log",
    shell:
        "python benchmarks/speed.py --merge {input.parts} --out {params.out_dir} > {log} 2>&1"
