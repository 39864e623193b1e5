"""Captions are written once, beside their table's or figure's declaration in its analysis module, and
every consumer shows that caption: the site's pages (through the include ``stage`` writes), Snakemake's
report (its generated .rst files) and nothing else (the notebooks carry no copy)."""

import json
import re

import pytest
import yaml
from docutils.core import publish_parts

from vaeflow.analysis import declared_outputs
from vaeflow.analysis.captions import (
    KINDS,
    REPORT_SUFFIX,
    Caption,
    all_captions,
    analyses,
    report_caption,
    report_files,
    rst_text,
    site_caption,
    write_report_captions,
)
from vaeflow.site.quarto import check_project, pages, site_inputs, stage

FLOAT = re.compile(r"^:::+\s*\{#((?:fig|tbl)-[\w-]+)[^}]*\}\s*$(.*?)^:::+\s*$", re.M | re.S)
SHOWN = re.compile(r"\{\{< include results/(tables|figures)/(\w+)\.(?:md|chart\.md) >\}\}")
INCLUDED = re.compile(r"\{\{< include results/(tables|figures)/(\w+)\.caption\.md >\}\}")


def test_the_analyses_are_the_five_modules_of_the_workflow(root):
    rules = (root / "workflow/rules/analyses.smk").read_text()
    listed = re.findall(r'^    "(\w+)": \{$', rules.split("ANALYSIS_RULES = {", 1)[1].split("\n}\n", 1)[0], re.M)
    assert sorted(listed) == analyses()


def test_every_declared_table_and_figure_has_exactly_one_caption():
    captions = all_captions()  # raises on a stem declared twice, an entry without title or caption
    declared = {(kind, stem) for a in analyses() for kind in KINDS for stem in declared_outputs(a)[kind.upper()]}
    assert set(captions) == declared and len(declared) == 39
    for caption in captions.values():
        assert len(caption.text.split()) > 15, f"{caption.stem}: say what it shows"
        # the link to the Reproduce page is made from the stem; the caption does not write it
        assert "Reproduce" not in caption.text and "reproduce.qmd" not in caption.text, caption.stem


def test_every_site_float_includes_its_caption_and_writes_none(root):
    """Each float that shows a table or chart has exactly two lines: the table or chart, and the include of
    its caption; every declared table and figure is shown so, on at least one page."""
    shown = set()
    for page in pages(root / "report"):
        text = (root / "report" / page).read_text(encoding="utf-8")
        for label, body in FLOAT.findall(text):
            what = SHOWN.findall(body)
            if not what:
                continue
            assert len(what) == 1, (page, label)
            assert INCLUDED.findall(body) == what, f"{page}: {label} must include its caption"
            rest = INCLUDED.sub("", SHOWN.sub("", body)).strip()
            assert rest == "", f"{page}: {label} writes its own caption: {rest[:80]!r}"
            shown.add(what[0])
    assert shown == set(all_captions())
    assert not [p for p in site_inputs(root / "report") if p.endswith(".caption.md")]  # stage writes them


def test_the_report_captions_are_generated_from_the_modules(root):
    """workflow/report/**/<stem>.rst are exactly what the modules declare (regenerate them with
    `python -m vaeflow.analysis.captions`), and each renders as Snakemake renders it, without a warning."""
    drift = write_report_captions(root / "workflow/report", check=True)
    assert drift == [], f"run `python -m vaeflow.analysis.captions`: {[str(p) for p in drift]}"
    captions = all_captions()
    targets = "\n".join(f".. _{stem}{REPORT_SUFFIX[kind]}: #" for kind, stem in captions)  # as Snakemake adds
    for path, text in report_files(root / "workflow/report").items():
        body = text.split(".. csv-table::", 1)[0]  # the table's CSV exists only in a study
        html = publish_parts(
            body + "\n\n" + targets + "\n",
            writer_name="html",
            settings_overrides={"report_level": 2, "halt_level": 2},
        )["body"]
        caption = captions[path.parent.name, path.stem]
        assert caption.title in html, path
        assert "{{" not in text and "{%" not in text, path  # Snakemake renders captions with Jinja


def test_the_notebooks_carry_no_caption_of_their_own(root):
    """Nothing renders the notebooks' cells as floats (the site includes no notebook cell), so they have no
    fig-cap or tbl-cap: the caption is the module's. Each still writes its outputs from a labelled cell."""
    for analysis in analyses():
        cells = json.loads((root / f"workflow/notebooks/{analysis}.ipynb").read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells)
        assert not re.search(r"^#\|\s*(fig|tbl)-cap", source, re.M), analysis
        for kind, stem in (k for k, c in all_captions().items() if c.analysis == analysis):
            assert f'{kind}_dir}}/{stem}"' in source, f"{analysis}.ipynb never writes {stem}"
    for page in pages(root / "report"):
        assert "{{< embed" not in (root / "report" / page).read_text(), page


def test_the_markdown_becomes_restructured_text():
    captions = {
        ("tables", "a_b"): Caption("x", "tables", "a_b", "T", "t"),
        ("figures", "c"): Caption("x", "figures", "c", "F", "f"),
    }
    text = "As in @tbl-a-b and @fig-c. $k = 1$, `code`, the [discussion](discussion.qmd), *it*."
    assert rst_text(text, captions) == ("As in `a_b.csv`_ and `c.svg`_. :math:`k = 1`, ``code``, the discussion, *it*.")
    with pytest.raises(ValueError, match="no declared table or figure"):
        rst_text("see @tbl-nowhere", captions)
    with pytest.raises(ValueError, match="shortcode"):
        rst_text("{{< var likelihood.runs >}} runs", captions)
    rst = report_caption(captions["tables", "a_b"], captions)
    assert "**T** (``results/tables/a_b.csv``)" in rst and ":file: results/tables/a_b.csv" in rst


def test_stage_writes_each_caption_the_pages_include(tmp_path, root):
    """The staged site holds each caption include, made from the module with its Reproduce link, and checks."""
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
    anchors = [f"table-{stem}" if kind == "tables" else f"figure-{stem}" for kind, stem in all_captions()]
    (results / "provenance/reproduce.md").write_text("".join(f"[]{{#{a}}}\n" for a in [*anchors, "variables"]))
    values: dict = {}
    for page in pages(root / "report"):
        for name in re.findall(r"\{\{< var ([\w.]+) >\}\}", (root / "report" / page).read_text()):
            *parents, leaf = name.split(".")
            node = values
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = "x"
    variables = tmp_path / "variables.yml"
    variables.write_text(yaml.safe_dump(values))
    out = stage(root / "report", results, variables, tmp_path / "out")
    assert check_project(out) == []
    written = sorted(p.relative_to(out).as_posix() for p in out.glob("results/*/*.caption.md"))
    captions = all_captions()
    assert written == sorted(f"results/{kind}/{stem}.caption.md" for kind, stem in captions)
    for kind, stem in captions:
        text = (out / f"results/{kind}/{stem}.caption.md").read_text()
        assert text == site_caption(captions[kind, stem]), stem
        assert text.rstrip().endswith(f"[Reproduce](reproduce.qmd#{kind[:-1]}-{stem})"), stem
        assert "\n" not in text.rstrip("\n"), f"{stem}: one paragraph, or it is no longer the float's caption"
