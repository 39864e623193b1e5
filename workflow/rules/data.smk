# Stage 1: prepare each dataset once into results/data/ (arrays + manifest with sha256).


rule prepare_data:
    input:
        code=lambda wc: code(f"vaeflow.data.{wc.dataset}", "vaeflow.data.store"),
    output:
        data="results/data/{dataset}.npz",
        manifest="results/data/{dataset}.json",
    params:
        options=lambda wc: json.dumps(config["datasets"][wc.dataset] or {}, sort_keys=True),
        seed=config["data_seed"],
    conda:
        CONDA_ENV
    log:
        "results/logs/data/{dataset}.log",
    shell:
        "python -m vaeflow prepare-data --dataset {wildcards.dataset} --options {params.options:q} "
        "--seed {params.seed} --out {output.data} > {log} 2>&1"
