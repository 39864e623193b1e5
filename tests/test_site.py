"""The static check of the Quarto project: everything resolves, and each break is caught."""

import json
import re
import shutil

import pytest
import yaml

from vaeflow.site.quarto import check_project, site_inputs, stage


def _project(tmp_path):
    project = tmp_path / "site"
    (project / "results/tables").mkdir(parents=True)
    (project / "results/figures").mkdir(parents=True)
    (project / "results/notebooks").mkdir(parents=True)
    (project / "_quarto.yml").write_text(
        yaml.safe_dump(
            {
                "project": {"type": "website", "render": ["index.qmd", "page.qmd", "reproduce.qmd"]},
                "website": {"navbar": {"left": [{"href": "index.qmd"}, {"href": "page.qmd"}]}},
                "bibliography": "references.bib",
            }
        )
    )
    (project / "references.bib").write_text("@article{known2020,\n  title={T}, author={A}, year={2020}\n}\n")
    (project / "_variables.yml").write_text(yaml.safe_dump({"likelihood": {"mnist": {"bpd": "1.0"}}}))
    (project / "results/tables/t.md").write_text("| a |\n|---|\n| 1 |\n")
    (project / "results/figures/f.svg").write_text("<svg/>")
    notebook = {
        "cells": [{"cell_type": "code", "source": ["#| label: fig-nb\n", "x = 1"]}],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (project / "results/notebooks/n.ipynb").write_text(json.dumps(notebook))
    (project / "index.qmd").write_text("---\ntitle: I\n---\nSee [@known2020] and `@notacitation` in code.\n")
    (project / "page.qmd").write_text(
        "---\ntitle: P\n---\n"
        "::: {#tbl-t}\n{{< include results/tables/t.md >}}\n\nCaption. [Reproduce](reproduce.qmd#table-t)\n:::\n\n"
        "![Cap [Reproduce](reproduce.qmd#figure-f)](results/figures/f.svg){#fig-f}\n\n"
        "{{< embed results/notebooks/n.ipynb#fig-nb >}}\n\n"
        "@tbl-t, @fig-f and @fig-nb; {{< var likelihood.mnist.bpd >}} bits/dim; mail a@b.org.\n"
    )
    (project / "reproduce.qmd").write_text(
        "---\ntitle: R\n---\n### Table t {#table-t}\n\n### Figure f {#figure-f}\n\nBack to [the "
        "page](page.qmd#tbl-t).\n"
    )
    return project


def test_a_sound_project_passes(tmp_path):
    assert check_project(_project(tmp_path)) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda p: p.replace("tables/t.md", "tables/missing.md"), "include results/tables/missing.md does not exist"),
        (
            lambda p: p.replace("likelihood.mnist.bpd", "likelihood.cifar.bpd"),
            "variable likelihood.cifar.bpd is not defined",
        ),
        (lambda p: p.replace("@tbl-t,", "@tbl-nowhere,"), "cross-reference @tbl-nowhere has no target"),
        (lambda p: p.replace("figures/f.svg", "figures/g.svg"), "image results/figures/g.svg does not exist"),
        (lambda p: p.replace("n.ipynb#fig-nb", "n.ipynb#fig-other"), "has no cell labelled fig-other"),
        (lambda p: p + "\nAs shown by [@unknown2021].\n", "citation @unknown2021 is not in the bibliography"),
        (lambda p: p.replace(" [Reproduce](reproduce.qmd#table-t)", ""), "tbl-t has no provenance link"),
        (lambda p: p.replace(" [Reproduce](reproduce.qmd#figure-f)", ""), "fig-f has no provenance link"),
        (lambda p: p.replace("#table-t)", "#table-u)"), "link to reproduce.qmd#table-u, which has no such anchor"),
        (lambda p: p + "\nSee [there](other.qmd#x).\n", "link to other.qmd#x, but other.qmd is not a page of the site"),
        (
            lambda p: p + '\n[Every column](results/tables/gone.csv){download="gone.csv"}\n',
            "link to results/tables/gone.csv, which does not exist",
        ),
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


def test_a_navbar_menu_entry_must_link_to_a_rendered_page(tmp_path):
    project = _project(tmp_path)
    config = yaml.safe_load((project / "_quarto.yml").read_text())
    config["website"]["navbar"]["left"].append(
        {"text": "Results", "menu": [{"href": "page.qmd"}, {"href": "gone.qmd"}]}
    )
    (project / "_quarto.yml").write_text(yaml.safe_dump(config))
    problems = check_project(project)
    assert [p for p in problems if "navbar" in p] == [
        "_quarto.yml: navbar links to gone.qmd, which is not in project.render"
    ]


def test_the_report_shows_every_declared_table_and_figure_and_nothing_else(root):
    """Every table (.md, and the .csv its download link points to) and figure (.svg) the analyses
    declare is on the site, and the site uses no other generated file: its inputs are exactly the
    analyses' outputs."""
    import importlib

    declared = []
    for analysis in ("likelihood", "high_frequency", "anomaly", "cost", "latents"):
        module = importlib.import_module(f"vaeflow.analysis.{analysis}")
        declared += [f"results/tables/{stem}{ext}" for stem in module.TABLES for ext in (".md", ".csv")]
        declared += [f"results/figures/{stem}{ext}" for stem in module.FIGURES for ext in (".svg", ".vl.json")]
    provenance = [
        "results/provenance/design.md",
        "results/provenance/environment.md",
        "results/provenance/reproduce.md",
    ]
    assert site_inputs(root / "report") == sorted(declared + provenance)


def test_every_figure_is_an_interactive_chart_with_a_provenance_link(root):
    """Pages show figures through chart fragments (a local vega-embed), never as bare images,
    and each figure and table caption links to its own entry on the Reproduce page."""
    from vaeflow.site.quarto import pages

    for page in pages(root / "report"):
        path = root / "report" / page
        if not path.is_file():
            continue
        text = path.read_text()
        assert "](results/figures/" not in text, f"{page} shows a figure as an image; include its .chart.md"
        # the caption include, which stage writes from the analysis module, ends with the link
        # (vaeflow.analysis.captions.site_caption; tests/test_captions.py)
        for stem in re.findall(r"include results/figures/(\w+)\.chart\.md", text):
            assert f"include results/figures/{stem}.caption.md" in text, (page, stem)
        for stem in re.findall(r"include results/tables/(\w+)\.md", text):
            assert f"include results/tables/{stem}.caption.md" in text, (page, stem)


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
        path.write_text(
            "| a |\n|---|\n| 1 |\n"
            if rel.endswith(".md")
            else '{"$schema": "v5.json"}'
            if rel.endswith(".json")
            else "<svg/>"
        )
    variables = tmp_path / "variables.yml"
    variables.write_text("likelihood: {runs: 1}\n")
    with pytest.raises(ValueError, match="variable likelihood.seeds is not defined"):
        stage(root / "report", results, variables, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    shutil.rmtree(results)


def test_chart_fragment_holds_the_spec_inline_and_cannot_end_its_script_early():
    from vaeflow.site.charts import chart_fragment

    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "a </script> b",
        "data": {"values": [{"x": 1}]},
        "mark": "point",
    }
    fragment = chart_fragment("f", spec)
    assert fragment.startswith("```{=html}\n") and fragment.endswith("```\n")
    assert fragment.count("</script>") == 2  # the spec's own "</script>" is escaped
    body = re.search(r'<script type="application/json" id="vega-f-spec">(.*?)</script>', fragment).group(1)
    assert json.loads(body) == spec
    assert 'vegaEmbed("#vega-f"' in fragment and 'renderer: "svg"' in fragment
    assert '<img src="results/figures/f.svg" alt="f">' in fragment  # the no-script fallback
    # the alt text: the spec's description, escaped for the attribute, on the chart and on its fallback
    described = chart_fragment("f", {**spec, "description": 'Dots "quoted" & <tagged>,\n on two lines.'})
    label = "Dots &quot;quoted&quot; &amp; &lt;tagged&gt;, on two lines."
    assert f'role="img" aria-label="{label}"' in described and f'alt="{label}"></noscript>' in described


def test_stage_writes_charts_and_the_local_vega_bundle(tmp_path):
    report = _project(tmp_path)
    results = tmp_path / "results"
    shutil.move(report / "results", results)
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "mark": "point", "data": {"values": []}}
    (results / "figures/f.vl.json").write_text(json.dumps(spec))
    page = report / "page.qmd"
    page.write_text(
        page.read_text().replace(
            "![Cap [Reproduce](reproduce.qmd#figure-f)](results/figures/f.svg){#fig-f}",
            "::: {#fig-f}\n{{< include results/figures/f.chart.md >}}\n\nCap [Reproduce](reproduce.qmd#figure-f)\n:::",
        )
    )
    assert site_inputs(report) == [
        "results/figures/f.svg",
        "results/figures/f.vl.json",
        "results/notebooks/n.ipynb",
        "results/tables/t.csv",
        "results/tables/t.md",
    ]
    (results / "tables/t.csv").write_text("a\n1\n")
    out = stage(report, results, report / "_variables.yml", tmp_path / "site-src")
    chart = (out / "results/figures/f.chart.md").read_text()
    assert json.dumps(spec, separators=(",", ":"), sort_keys=True) in chart and "vegaEmbed" in chart
    assert (out / "results/figures/f.svg").is_file()  # the no-script fallback
    assert (out / "results/tables/t.csv").read_text() == "a\n1\n"  # the table's full CSV, for its download link
    bundle = (out / "vega-bundle.js").read_text()
    assert "window.vegaEmbed=" in bundle and len(bundle) > 100_000  # the browser tests check it requests nothing


def test_the_abstract_types_no_number(root):
    """Every number on the landing page comes from results/variables.yml: with the variables, the
    citations, the math, the link targets and the questions' numbering taken out, no digit is left
    but those of two dataset names."""
    text = (root / "report" / "index.qmd").read_text(encoding="utf-8").split("---", 2)[2]
    assert "{{< var " in text and ".chart.md >}}" in text  # the abstract quotes results and shows a figure
    for pattern in (r"\{\{<.*?>\}\}", r"\$[^$]*\$", r"\[@[^\]]*\]", r"\]\([^)]*\)", r"^\*\*\d\. "):
        text = re.sub(pattern, "", text, flags=re.S | re.M)
    for name in ("8×8", "2-D"):
        text = text.replace(name, "")
    assert re.findall(r".{0,30}\d.{0,30}", text) == []


def test_the_site_prints_floats_as_decimals(tmp_path):
    """Quarto prints a YAML float such as 0.047 as "4.7e-2"; the staged variables hold the decimal."""
    from vaeflow.site.quarto import write_site_variables

    source = tmp_path / "variables.yml"
    source.write_text(
        yaml.safe_dump(
            {"a": {"gap": 0.047, "tiny": 1e-5, "n": 3, "big": 123456.0, "text": "0.047 bits", "list": [0.5, 2.25e-4]}}
        )
    )
    write_site_variables(source, tmp_path / "_variables.yml")
    shown = yaml.safe_load((tmp_path / "_variables.yml").read_text())
    assert shown == {
        "a": {
            "gap": "0.047",
            "tiny": "0.00001",
            "n": 3,
            "big": "123456",
            "text": "0.047 bits",
            "list": ["0.5", "0.000225"],
        }
    }
