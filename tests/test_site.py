"""The static check of the Quarto project: everything resolves, and each break is caught."""

import json
import shutil

import pytest
import yaml

from vaeflow.site.quarto import check_project, site_inputs, stage


def _project(tmp_path):
    project = tmp_path / "site"
    (project / "results/tables").mkdir(parents=True)
    (project / "results/figures").mkdir(parents=True)
    (project / "results/notebooks").mkdir(parents=True)
    (project / "_quarto.yml").write_text(yaml.safe_dump({
        "project": {"type": "website", "render": ["index.qmd", "page.qmd"]},
        "website": {"navbar": {"left": [{"href": "index.qmd"}, {"href": "page.qmd"}]}},
        "bibliography": "references.bib",
    }))
    (project / "references.bib").write_text("@article{known2020,\n  title={T}, author={A}, year={2020}\n}\n")
    (project / "_variables.yml").write_text(yaml.safe_dump({"likelihood": {"mnist": {"bpd": "1.0"}}}))
    (project / "results/tables/t.md").write_text("| a |\n|---|\n| 1 |\n")
    (project / "results/figures/f.svg").write_text("<svg/>")
    notebook = {"cells": [{"cell_type": "code", "source": ["#| label: fig-nb\n", "x = 1"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (project / "results/notebooks/n.ipynb").write_text(json.dumps(notebook))
    (project / "index.qmd").write_text("---\ntitle: I\n---\nSee [@known2020] and `@notacitation` in code.\n")
    (project / "page.qmd").write_text(
        "---\ntitle: P\n---\n"
        "::: {#tbl-t}\n{{< include results/tables/t.md >}}\n\nCaption.\n:::\n\n"
        "![Cap](results/figures/f.svg){#fig-f}\n\n"
        "{{< embed results/notebooks/n.ipynb#fig-nb >}}\n\n"
        "@tbl-t, @fig-f and @fig-nb; {{< var likelihood.mnist.bpd >}} bits/dim; mail a@b.org.\n"
    )
    return project


def test_a_sound_project_passes(tmp_path):
    assert check_project(_project(tmp_path)) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda p: p.replace("tables/t.md", "tables/missing.md"), "include results/tables/missing.md does not exist"),
        (lambda p: p.replace("likelihood.mnist.bpd", "likelihood.cifar.bpd"), "variable likelihood.cifar.bpd is not defined"),
        (lambda p: p.replace("@tbl-t,", "@tbl-nowhere,"), "cross-reference @tbl-nowhere has no target"),
        (lambda p: p.replace("figures/f.svg", "figures/g.svg"), "image results/figures/g.svg does not exist"),
        (lambda p: p.replace("n.ipynb#fig-nb", "n.ipynb#fig-other"), "has no cell labelled fig-other"),
        (lambda p: p + "\nAs shown by [@unknown2021].\n", "citation @unknown2021 is not in the bibliography"),
    ],
)
def test_each_broken_reference_is_reported(tmp_path, edit, expected):
    project = _project(tmp_path)
    page = project / "page.qmd"
    page.write_text(edit(page.read_text()))
    problems = check_project(project)
    assert any(expected in p for p in problems), problems


def test_missing_page_and_bad_navbar(tmp_path):
    project = _project(tmp_path)
    (project / "page.qmd").unlink()
    config = yaml.safe_load((project / "_quarto.yml").read_text())
    config["website"]["navbar"]["left"].append({"href": "other.qmd"})
    (project / "_quarto.yml").write_text(yaml.safe_dump(config))
    problems = check_project(project)
    assert "_quarto.yml: page page.qmd does not exist" in problems
    assert any("navbar links to other.qmd" in p for p in problems)


def test_the_report_shows_every_declared_table_and_figure_and_nothing_else(root):
    """Every table (.md) and figure (.svg) the analyses declare is on the site, and the site
    uses no other generated file: its inputs are exactly the analyses' outputs."""
    import importlib

    declared = []
    for analysis in ("likelihood", "high_frequency", "anomaly", "cost", "latents"):
        module = importlib.import_module(f"vaeflow.analysis.{analysis}")
        declared += [f"results/tables/{stem}.md" for stem in module.TABLES]
        declared += [f"results/figures/{stem}.svg" for stem in module.FIGURES]
    assert site_inputs(root / "report") == sorted(declared)


def test_stage_refuses_a_missing_input_and_leaves_nothing(tmp_path, root):
    results = tmp_path / "results"
    (results / "tables").mkdir(parents=True)
    (results / "tables/likelihood.md").write_text("| a |\n|---|\n| 1 |\n")
    variables = tmp_path / "variables.yml"
    variables.write_text("likelihood: {}\n")
    out = tmp_path / "results/site-src"
    with pytest.raises(FileNotFoundError, match=r"page input results/figures/\w+\.svg does not exist"):
        stage(root / "report", results, variables, out)
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir()] == ["tables"]


def test_stage_refuses_unresolved_variables(tmp_path, root):
    results = tmp_path / "results"
    for rel in site_inputs(root / "report"):
        path = results / rel.removeprefix("results/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("| a |\n|---|\n| 1 |\n" if rel.endswith(".md") else "<svg/>")
    variables = tmp_path / "variables.yml"
    variables.write_text("likelihood: {runs: 1}\n")
    with pytest.raises(ValueError, match="variable likelihood.seeds is not defined"):
        stage(root / "report", results, variables, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    shutil.rmtree(results)
