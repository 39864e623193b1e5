"""The Quarto website: find what the pages use, stage them with it, check it, render it.

The sources live in ``report/``; pages refer to generated files by paths that start
with ``results/`` (``{{< include results/tables/x.md >}}``, ``![..](results/figures/x.svg)``,
``{{< embed results/notebooks/x.ipynb#label >}}``); a figure is shown as an interactive chart by
including ``results/figures/<stem>.chart.md``, which ``stage`` writes from the figure's spec
(:mod:`vaeflow.site.charts`), and its caption by including ``results/{tables,figures}/<stem>.caption.md``,
which ``stage`` writes from the caption its analysis module declares (:mod:`vaeflow.analysis.captions`).
``stage`` copies the pages and exactly those files into
``results/site-src/`` (a self-contained Quarto project, with the merged variables as
``_variables.yml`` and the local vega bundle), so the render's inputs are exactly what the
pages show; a table comes with its CSV, which the download link under it points to.
``check_project`` verifies a project without Quarto: every page, include, embed, image,
cross-reference, variable and citation resolves.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vaeflow.analysis.captions import all_captions, caption_file, site_caption
from vaeflow.site.charts import BUNDLE, chart_sources, chart_stem, write_bundle, write_chart

PAGE_SUFFIXES = (".qmd", ".md")
SOURCE_FILES = ("_quarto.yml", "references.bib", "styles.css")
QUARTO_MISSING = (
    "Quarto is not installed (no `quarto` on PATH), so the website was not rendered. Every "
    "result was still built, and the site's sources were staged and checked in results/site-src/. "
    "To render it, install Quarto (conda: `conda install -c conda-forge quarto`, or a release "
    "from quarto.org) and run `snakemake --cores 2 results/site`."
)

_SHORTCODE = re.compile(r"\{\{<\s*(include|embed|var)\s+([^\s>]+)\s*>\}\}")
_IMAGE = re.compile(r"!\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)")  # a caption may hold one level of [links]
_ID = re.compile(r"#((?:fig|tbl|sec|eq|lst)-[\w-]+)")
_LABEL = re.compile(r"^#\|\s*label:\s*([\w-]+)\s*$", re.M)
_CITE_OR_REF = re.compile(r"(?<![\w.@/])@([\w][\w:.#$%&\-+?<>~/]*[\w])")
_CODE_BLOCK = re.compile(r"^```.*?^```", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_CROSSREF_PREFIXES = ("fig-", "tbl-", "sec-", "eq-", "lst-")
_ANY_ID = re.compile(r"\{#([\w-]+)")
_PAGE_LINK = re.compile(r"\]\(([\w-]*\.qmd)?#([\w-]+)\)")
_FLOAT_DIV = re.compile(r"^:::+\s*\{#((?:fig|tbl)-[\w-]+)[^}]*\}\s*$(.*?)^:::+\s*$", re.M | re.S)
_FLOAT_IMAGE = re.compile(r"!\[((?:[^\[\]]|\[[^\]]*\])*)\]\([^)]*\)\{#((?:fig|tbl)-[\w-]+)")
_TABLE = re.compile(r"^results/tables/([\w-]+)\.md$")
_RESULT_LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\((results/[^)\s#]+)\)")  # not an image
PROVENANCE_PAGE = "reproduce.qmd"


def quarto_available() -> bool:
    return shutil.which("quarto") is not None


def read_project(project_dir: str | Path) -> dict[str, Any]:
    path = Path(project_dir) / "_quarto.yml"
    if not path.is_file():
        raise FileNotFoundError(f"no _quarto.yml in {project_dir}; the Quarto project lives in report/")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def pages(project_dir: str | Path) -> list[str]:
    """The pages the project renders (``project.render``), relative to the project."""
    project = read_project(project_dir).get("project", {})
    listed = project.get("render")
    if not listed:
        raise ValueError(f"{project_dir}/_quarto.yml must list its pages under project.render")
    return [str(p) for p in listed]


def _strip_code(text: str) -> str:
    return _INLINE_CODE.sub("", _CODE_BLOCK.sub("", text))


def results_used(page_text: str) -> list[str]:
    """Paths under ``results/`` that a page includes, embeds or shows (without ``#label``)."""
    found = [target for kind, target in _SHORTCODE.findall(page_text) if kind in ("include", "embed")]
    found += _IMAGE.findall(page_text)
    return sorted({t.split("#", 1)[0] for t in found if t.startswith("results/")})


def _page_texts(report_dir: str | Path) -> list[str]:
    """The pages' texts; a listed page that does not exist is left to ``check_project`` to report."""
    paths = [Path(report_dir) / page for page in pages(report_dir)]
    return [path.read_text(encoding="utf-8") for path in paths if path.is_file()]


def table_sources(rel: str) -> list[str]:
    """A table the pages include (``results/tables/<stem>.md``) and its full CSV, which the table's
    download link under it points to; any other path alone."""
    match = _TABLE.match(rel)
    return [rel, f"results/tables/{match.group(1)}.csv"] if match else [rel]


def site_inputs(report_dir: str | Path) -> list[str]:
    """Every generated file the site uses, as paths relative to the project root (``results/...``);
    a chart stands for the figure's spec and SVG it is made from, a table for its markdown and the CSV
    it links to. A caption include is none: ``stage`` writes it from its analysis module."""
    used: set[str] = set()
    for text in _page_texts(report_dir):
        for rel in results_used(text):
            if caption_file(rel):
                continue
            stem = chart_stem(rel)
            used.update(chart_sources(stem) if stem else table_sources(rel))
    return sorted(used)


def charts_used(report_dir: str | Path) -> list[str]:
    """The figure stems the pages show as charts."""
    stems = {chart_stem(rel) for text in _page_texts(report_dir) for rel in results_used(text)}
    return sorted(s for s in stems if s)


def captions_used(report_dir: str | Path) -> list[str]:
    """The caption includes the pages use (``results/tables/<stem>.caption.md``)."""
    return sorted({rel for text in _page_texts(report_dir) for rel in results_used(text) if caption_file(rel)})


def write_captions(report_dir: str | Path, build: str | Path) -> None:
    """Write into the project ``build`` every caption include the pages use, from the analyses' declarations."""
    captions = all_captions()
    for rel in captions_used(report_dir):
        kind, stem = caption_file(rel)
        if (kind, stem) not in captions:
            raise ValueError(f"a page includes {rel}, but no analysis module declares {kind} {stem}")
        (Path(build) / rel).parent.mkdir(parents=True, exist_ok=True)
        (Path(build) / rel).write_text(site_caption(captions[kind, stem]), encoding="utf-8")


def source_files(report_dir: str | Path) -> list[Path]:
    """The hand-written files of the site: _quarto.yml, pages, bibliography, styles."""
    report_dir = Path(report_dir)
    files = [report_dir / name for name in SOURCE_FILES if (report_dir / name).exists()]
    return files + [report_dir / page for page in pages(report_dir) if (report_dir / page).is_file()]


def _as_shown(value: Any) -> Any:
    """A variable as a page should print it: floats as positional decimals (Quarto prints the YAML
    float 0.047 as "4.7e-2"), everything else unchanged, recursively."""
    if isinstance(value, dict):
        return {key: _as_shown(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_shown(item) for item in value]
    if isinstance(value, float) and math.isfinite(value):
        return np.format_float_positional(value, trim="-")
    return value


def write_site_variables(variables: str | Path, out: str | Path) -> None:
    """The site's ``_variables.yml``: ``results/variables.yml`` with every float written as the
    decimal a reader expects (:func:`_as_shown`)."""
    values = yaml.safe_load(Path(variables).read_text(encoding="utf-8")) or {}
    Path(out).write_text(yaml.safe_dump(_as_shown(values), sort_keys=True, allow_unicode=True), encoding="utf-8")


def stage(report_dir: str | Path, results_root: str | Path, variables: str | Path, out_dir: str | Path) -> Path:
    """Build the self-contained project in ``out_dir`` and check it; replace ``out_dir`` only when it passes."""
    report_dir, out_dir = Path(report_dir), Path(out_dir)
    results_root = Path(results_root)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for path in source_files(report_dir):
            shutil.copy2(path, build / path.name)
        write_site_variables(variables, build / "_variables.yml")
        for rel in site_inputs(report_dir):
            source = results_root / Path(rel).relative_to("results")
            if not source.is_file():
                raise FileNotFoundError(f"page input {rel} does not exist; run `snakemake --cores 2 {rel}` to build it")
            (build / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, build / rel)
        for stem in charts_used(report_dir):
            write_chart(stem, build / f"results/figures/{stem}.vl.json", build / f"results/figures/{stem}.chart.md")
        write_captions(report_dir, build)
        write_bundle(build / BUNDLE)
        problems = check_project(build)
        if problems:
            raise ValueError("the Quarto project does not resolve:\n  " + "\n  ".join(problems))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(build, out_dir)
    finally:
        if build.exists():
            shutil.rmtree(build)
    return out_dir


def _nested(mapping: dict[str, Any], dotted: str) -> bool:
    node: Any = mapping
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return not isinstance(node, dict)


def _bib_keys(path: Path) -> set[str]:
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", path.read_text(encoding="utf-8")))


def _notebook_labels(path: Path) -> set[str]:
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    labels: set[str] = set()
    for cell in cells:
        source = cell.get("source", "")
        labels.update(_LABEL.findall("".join(source) if isinstance(source, list) else source))
    return labels


def _expand_includes(page: Path, project: Path, problems: list[str], depth: int = 0) -> str:
    text = page.read_text(encoding="utf-8")

    def include(match: re.Match[str]) -> str:
        kind, target = match.group(1), match.group(2)
        if kind != "include":
            return match.group(0)
        path = (page.parent / target).resolve()
        if not path.is_file():
            problems.append(f"{page.relative_to(project)}: include {target} does not exist")
            return ""
        if depth > 5:
            problems.append(f"{page.relative_to(project)}: includes nest too deeply at {target}")
            return ""
        return _expand_includes(path, project, problems, depth + 1)

    return _SHORTCODE.sub(include, text)


def check_project(project_dir: str | Path) -> list[str]:
    """Everything that would not resolve when Quarto renders ``project_dir``; empty when all is well."""
    project = Path(project_dir).resolve()
    problems: list[str] = []
    config = read_project(project)
    if config.get("project", {}).get("type") != "website":
        problems.append("_quarto.yml: project.type must be website")
    page_list = pages(project)
    navbar = config.get("website", {}).get("navbar", {})
    entries = navbar.get("left", []) + navbar.get("right", [])
    entries += [item for entry in entries if isinstance(entry, dict) for item in entry.get("menu", [])]
    for entry in entries:
        href = entry.get("href") if isinstance(entry, dict) else entry
        if href and href not in page_list:
            problems.append(f"_quarto.yml: navbar links to {href}, which is not in project.render")
    variables_path = project / "_variables.yml"
    variables = yaml.safe_load(variables_path.read_text(encoding="utf-8")) if variables_path.exists() else {}
    bibliography = config.get("bibliography") or config.get("format", {}).get("html", {}).get("bibliography")
    bib_keys: set[str] = set()
    if bibliography:
        bib_path = project / bibliography
        if bib_path.is_file():
            bib_keys = _bib_keys(bib_path)
        else:
            problems.append(f"_quarto.yml: bibliography {bibliography} does not exist")

    expanded: dict[str, str] = {}
    for name in page_list:
        page = project / name
        if not page.is_file():
            problems.append(f"_quarto.yml: page {name} does not exist")
            continue
        expanded[name] = _expand_includes(page, project, problems)
    anchors = {name: set(_ANY_ID.findall(_strip_code(text))) for name, text in expanded.items()}

    for name, text in expanded.items():
        page = project / name
        prose = _strip_code(text)
        ids = set(_ID.findall(prose))
        problems += _provenance_problems(name, prose, PROVENANCE_PAGE in page_list)
        for target, anchor in _PAGE_LINK.findall(prose):
            target = target or name
            if target not in anchors:
                problems.append(f"{name}: link to {target}#{anchor}, but {target} is not a page of the site")
            elif anchor not in anchors[target]:
                problems.append(f"{name}: link to {target}#{anchor}, which has no such anchor")
        for kind, target in _SHORTCODE.findall(text):
            if kind == "var":
                if not _nested(variables or {}, target):
                    problems.append(f"{name}: variable {target} is not defined in _variables.yml")
            elif kind == "embed":
                path_part, _, label = target.partition("#")
                notebook = page.parent / path_part
                if not notebook.is_file():
                    problems.append(f"{name}: embedded notebook {path_part} does not exist")
                elif label and label not in _notebook_labels(notebook):
                    problems.append(f"{name}: notebook {path_part} has no cell labelled {label}")
                else:
                    ids.add(label)
        for image in _IMAGE.findall(prose):
            if "://" not in image and not (page.parent / image).is_file():
                problems.append(f"{name}: image {image} does not exist")
        for target in _RESULT_LINK.findall(prose):  # e.g. a table's download link to its CSV
            if not (page.parent / target).is_file():
                problems.append(f"{name}: link to {target}, which does not exist")
        for ref in _CITE_OR_REF.findall(prose):
            if ref.startswith(_CROSSREF_PREFIXES):
                if ref not in ids:
                    problems.append(f"{name}: cross-reference @{ref} has no target on the page")
            elif ref not in bib_keys:
                problems.append(f"{name}: citation @{ref} is not in the bibliography")
    return problems


def _provenance_problems(name: str, prose: str, have_page: bool) -> list[str]:
    """Every figure and table must link to its entry on the Reproduce page from its caption."""
    floats = [(label, body) for label, body in _FLOAT_DIV.findall(prose)]
    floats += [(label, caption) for caption, label in _FLOAT_IMAGE.findall(prose)]
    problems = []
    for label, caption in floats:
        if f"]({PROVENANCE_PAGE}#" not in caption:
            problems.append(
                f"{name}: {label} has no provenance link ([Reproduce]({PROVENANCE_PAGE}#...)) in its caption"
            )
    if floats and not have_page:
        problems.append(f"{name}: figures and tables link to {PROVENANCE_PAGE}, which is not in project.render")
    return problems


def render(project_dir: str | Path, out_dir: str | Path) -> Path:
    """Render the staged project with Quarto into ``out_dir``; a clear error when Quarto is missing."""
    if not quarto_available():
        raise RuntimeError(QUARTO_MISSING)
    project_dir, out_dir = Path(project_dir).resolve(), Path(out_dir).resolve()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    subprocess.run(["quarto", "render", str(project_dir), "--output-dir", str(out_dir)], check=True)
    if not (out_dir / "index.html").is_file():
        raise RuntimeError(f"quarto render finished but wrote no {out_dir}/index.html; see its output above")
    return out_dir
