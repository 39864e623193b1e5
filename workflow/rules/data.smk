# Stage 1: prepare each dataset once into results/data/ (arrays + manifest with sha256).
# The full-size datasets (mnist_full, fashion_mnist, cifar10) are built from official raw
# files: download_data fetches each one into resources/{dataset}/ and checks its sha256,
# unless the dataset's `path` option names a local directory that holds them.
import re

from vaeflow.data.download import RAW_FILES, raw_file, raw_input_paths


rule prepare_data:
    input:
        code=lambda wc: code(f"vaeflow.data.{wc.dataset}", "vaeflow.data.store"),
        # resources/{dataset}/<file> (rule download_data), or <path>/<file> when the option is set
        raw=lambda wc: raw_input_paths(wc.dataset, config["datasets"][wc.dataset]),
    output:
        data="results/data/{dataset}.npz",
        manifest="results/data/{dataset}.json",
    params:
        options=lambda wc: json.dumps(config["datasets"][wc.dataset] or {}, sort_keys=True),
        seed=config["data_seed"],
    threads: 1
    resources:
        **job_resources("data"),
    conda:
        CONDA_ENV
    log:
        "results/logs/data/{dataset}.log",
    shell:
        "python -m vaeflow prepare-data --dataset {wildcards.dataset} --options {params.options:q} "
        "--seed {params.seed} --out {output.data} > {log} 2>&1"


# One job per raw file, run on the machine that runs Snakemake (compute nodes of a
# cluster often have no internet). The file lands only once its sha256 matches;
# `snakemake --until download_data` fetches every file the study needs and stops.
rule download_data:
    output:
        "resources/{dataset}/{filename}",
    wildcard_constraints:
        filename="|".join(sorted({re.escape(entry.name) for files in RAW_FILES.values() for entry in files})),
    params:
        # a new URL or checksum in the code fetches the file again
        url=lambda wc: raw_file(wc.dataset, wc.filename).url,
        sha256=lambda wc: raw_file(wc.dataset, wc.filename).sha256,
    localrule: True
    retries: 2
    threads: 1
    resources:
        mem_mb=500,
        runtime=60,
    conda:
        CONDA_ENV
    log:
        "results/logs/download/{dataset}/{filename}.log",
    shell:
        "python -m vaeflow download-data --dataset {wildcards.dataset} --file {wildcards.filename} "
        "--out-dir resources/{wildcards.dataset} > {log} 2>&1"
