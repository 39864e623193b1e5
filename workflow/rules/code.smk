# Stage 0: the code. One digest file per set of modules that a kind of job runs (rule inputs
# `code=code(...)`): a sha256 per source file, rewritten whenever a source file is newer. A job
# depends on its digest, not on each file, so Snakemake tracks a few dozen files instead of
# thousands; a digest rewritten with the same bytes (a touched, unchanged file) reruns nothing.


rule code_digest:
    input:
        lambda wc: code_files(wc.codeset),
    output:
        "results/code/{codeset}.sha256",
    threads: 1
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/code/{codeset}.log",
    shell:
        # a shell job, not a `run:` block: Snakemake runs a local `run:` job as a new Snakemake process
        "python -m vaeflow.hashing --out {output:q} {input:q} > {log} 2>&1"
