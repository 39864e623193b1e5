# Stage 5: the website. `stage_site` copies the pages and exactly the generated files
# they use into results/site-src/ and checks that everything resolves (no Quarto
# needed); `render_site` renders it with Quarto where Quarto is installed.
from vaeflow.site.quarto import site_inputs
from vaeflow.site.quarto import source_files as site_sources


rule stage_site:
    input:
        pages=[os.path.relpath(p) for p in site_sources("report")],
        results=site_inputs("report"),
        variables="results/variables.yml",
        code=code("vaeflow.site.quarto"),
    output:
        directory("results/site-src"),
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
    conda:
        CONDA_ENV
    log:
        "results/logs/site/render.log",
    shell:
        "python -m vaeflow site render --report-dir {input} --out {output} > {log} 2>&1"
