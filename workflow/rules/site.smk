# Stage 5: the website. `reproduce_page` and `environment_page` write the provenance pages'
# bodies from Snakemake's own job records; `stage_site` copies the pages and exactly the
# generated files they use into results/site-src/ and checks that everything resolves (no
# Quarto needed); `render_site` renders it with Quarto where Quarto is installed.
# All of them run on the submitting machine (localrule), never as cluster jobs.
from vaeflow.site.quarto import site_inputs
from vaeflow.site.quarto import source_files as site_sources

PROVENANCE = "results/provenance"
SITE_INPUTS = site_inputs("report")  # read the pages once
# what the pages show: tables (a table's CSV comes from its job), figures (a chart's spec and SVG too) and the quoted numbers
SHOWN = [
    p for p in SITE_INPUTS
    if (p.startswith("results/tables/") and p.endswith(".md")) or (p.startswith("results/figures/") and p.endswith(".svg"))
] + ["results/variables.yml"]
CONFIGFILES = [os.path.relpath(c) for c in workflow.configfiles] or ["config/config.yaml"]


rule reproduce_page:
    input:
        shown=SHOWN,
        code=code("vaeflow.site.reproduce"),
    output:
        f"{PROVENANCE}/reproduce.md",
    params:
        configfiles=" ".join(f"--configfile {c}" for c in CONFIGFILES),
    threads: 1
    resources:
        **job_resources("site"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/site/reproduce.log",
    shell:
        "python -m vaeflow provenance reproduce {input.shown} --out {output} {params.configfiles} > {log} 2>&1"


rule environment_page:
    input:
        metrics=all_runs(f"{RUN}/metrics.json"),
        summaries=all_runs(f"{RUN}/train.json"),
        timings=all_runs(f"{RUN}/timing.json"),  # read beside each train.json
        jobs=[f for probe in PROBES for f in probe_runs(probe)] + [f"results/notebooks/{a}.ipynb" for a in ANALYSES],
        code=code("vaeflow.site.environment"),
    output:
        f"{PROVENANCE}/environment.md",
    params:
        configfiles=" ".join(f"--configfile {c}" for c in CONFIGFILES),
        seeds=" ".join(str(s) for s in SEEDS),
        data_seed=config.get("data_seed", 0),
    threads: 1
    resources:
        **job_resources("site"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/site/environment.log",
    shell:
        "python -m vaeflow provenance environment {input.jobs} --metrics {input.metrics} --summaries {input.summaries} "
        "--out {output} {params.configfiles} --seeds {params.seeds} --data-seed {params.data_seed} > {log} 2>&1"


# the logit-alpha sweep's result (benchmarks/logit_alpha.py), committed with the config it chose for
ALPHA_SWEEP = "benchmarks/results/logit_alpha.json"


rule design_page:
    input:
        configfiles=CONFIGFILES,
        sweep=[ALPHA_SWEEP] if os.path.exists(ALPHA_SWEEP) else [],
        speed=rules.speed_summary.output.json,  # the left-out models' measured training step
        code=code("vaeflow.site.design"),
    output:
        f"{PROVENANCE}/design.md",
    params:
        configfiles=" ".join(f"--configfile {c}" for c in CONFIGFILES),
        sweep=f"--sweep {ALPHA_SWEEP}" if os.path.exists(ALPHA_SWEEP) else "",
    threads: 1
    resources:
        **job_resources("site"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/site/design.log",
    shell:
        "python -m vaeflow design {params.configfiles} {params.sweep} --speed {input.speed} --out {output} > {log} 2>&1"


rule stage_site:
    input:
        pages=[os.path.relpath(p) for p in site_sources("report")],
        results=SITE_INPUTS,
        variables="results/variables.yml",
        # the analysis modules declare the captions the pages include (vaeflow.analysis.captions)
        captions=[f"src/vaeflow/analysis/{analysis}.py" for analysis in ANALYSES],
        code=code("vaeflow.site.quarto"),
    output:
        directory("results/site-src"),
    threads: 1
    resources:
        **job_resources("site"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/site/stage.log",
    shell:
        "python -m vaeflow site stage --report report --results results "
        "--variables {input.variables} --out {output} > {log} 2>&1"


rule render_site:
    input:
        "results/site-src",
    output:
        directory("results/site"),
    threads: 1
    resources:
        **job_resources("site"),
    localrule: True
    conda:
        CONDA_ENV
    log:
        "results/logs/site/render.log",
    shell:
        "python -m vaeflow site render --report-dir {input} --out {output} > {log} 2>&1"
