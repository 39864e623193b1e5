"""Captions of the analyses' tables and figures: written once, shown by the site and by Snakemake's report.

Each analysis module declares its outputs with their captions (``TABLES`` and ``FIGURES``, see
:mod:`vaeflow.analysis`): a stem maps to a ``title`` (the heading of its entry in Snakemake's report)
and a ``caption`` (what the reader is told under it, in Quarto Markdown: ``$math$``, ``*emphasis*``,
``@tbl-``/``@fig-`` cross-references to a float of the same page, ``[links](page.qmd)``). From that:

- the site: ``stage`` writes ``results/{tables,figures}/<stem>.caption.md`` (:func:`site_caption`: the
  caption and its link to the Reproduce page) into the staged project, and each page's float includes it;
- Snakemake's report: ``workflow/report/{tables,figures}/<stem>.rst`` (:func:`report_caption`, the same
  text in reStructuredText under its title) are generated files, written by ``python -m
  vaeflow.analysis.captions`` and checked against the modules by the tests (``report()`` reads them when the report is
  made, so they live in the repository);
- the notebooks carry no caption of their own (nothing renders their cells' caption options).

Reading the declarations parses the modules' source (:func:`vaeflow.analysis.declared_outputs`), so
neither the workflow nor the site stage imports the analyses' libraries.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from vaeflow.analysis import ANALYSIS_DIR, declared_outputs

KINDS = ("tables", "figures")
#: the file of a table or figure that Snakemake's report shows (``report()`` in workflow/rules/common.smk)
REPORT_SUFFIX = {"tables": ".csv", "figures": ".svg"}
#: the Quarto cross-reference prefix of a table or a figure
PREFIX = {"tables": "tbl", "figures": "fig"}
#: the anchor prefix of an entry on the Reproduce page (vaeflow.site.reproduce)
ANCHOR = {"tables": "table", "figures": "figure"}
CAPTION_SUFFIX = ".caption.md"
REPORT_DIR = "workflow/report"

_CAPTION_FILE = re.compile(r"^results/(tables|figures)/(\w+)\.caption\.md$")
_MATH = re.compile(r"(?<!\\)\$([^$\n]+?)\$")
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\[\]]+)\]\(([^)\s]+)\)")
_XREF = re.compile(r"(?<![\w@])@((?:tbl|fig)-[\w-]+)")


@dataclass(frozen=True)
class Caption:
    """The caption of one table or figure, as its analysis module declares it."""

    analysis: str
    kind: str  # "tables" or "figures"
    stem: str
    title: str
    text: str

    @property
    def label(self) -> str:
        """The Quarto label its float has on the page of its analysis (``tbl-likelihood-gaps``)."""
        return f"{PREFIX[self.kind]}-{self.stem.replace('_', '-')}"


def analyses() -> list[str]:
    """The analysis modules: every module of the package that declares ``TABLES``."""
    return sorted(
        path.stem
        for path in ANALYSIS_DIR.glob("*.py")
        if re.search(r"^TABLES\s*=", path.read_text(encoding="utf-8"), re.M)
    )


def declared_captions(analysis: str) -> list[Caption]:
    """The captions of one analysis's tables and figures, in its declaration's order."""
    declared = declared_outputs(analysis, captions=True)
    found = []
    for kind in KINDS:
        for stem, entry in declared[kind.upper()].items():
            if not isinstance(entry, dict) or set(entry) != {"title", "caption"}:
                raise ValueError(f"{analysis}.{kind.upper()}[{stem!r}] must be {{'title': ..., 'caption': ...}}")
            title, text = (" ".join(str(entry[key]).split()) for key in ("title", "caption"))
            if not title or not text:
                raise ValueError(f"{analysis}.{kind.upper()}[{stem!r}] has an empty title or caption")
            found.append(Caption(analysis, kind, stem, title, text))
    return found


def all_captions() -> dict[tuple[str, str], Caption]:
    """Every caption of every analysis, by (kind, stem); a stem is declared once per kind."""
    found: dict[tuple[str, str], Caption] = {}
    for analysis in analyses():
        for caption in declared_captions(analysis):
            key = (caption.kind, caption.stem)
            if key in found:
                raise ValueError(f"{caption.kind} {caption.stem} is declared by {found[key].analysis} and {analysis}")
            found[key] = caption
    return found


def caption_file(rel: str) -> tuple[str, str] | None:
    """(kind, stem) of a caption include (``results/tables/<stem>.caption.md``), else None."""
    match = _CAPTION_FILE.match(rel)
    return (match.group(1), match.group(2)) if match else None


def site_caption(caption: Caption) -> str:
    """The caption the site's float includes: its text and its link to its entry on the Reproduce page.

    One paragraph, so that it is the float's caption whatever follows the include on the page."""
    return f"{caption.text} [Reproduce](reproduce.qmd#{ANCHOR[caption.kind]}-{caption.stem})\n"


def rst_text(markdown: str, captions: dict[tuple[str, str], Caption] | None = None) -> str:
    """A caption's Markdown as reStructuredText: math as ``:math:``, code as literals, a cross-reference
    to another table or figure as a link to its file in the report, a link to a site page as its text."""
    captions = all_captions() if captions is None else captions
    by_label = {c.label: c for c in captions.values()}
    if any(mark in markdown for mark in ("{{", "{%", "{#")):
        # Snakemake renders a caption with Jinja; a site {{< var >}} has no value in the report
        raise ValueError(f"a caption cannot hold a shortcode or template mark: {markdown!r}")

    def xref(match: re.Match[str]) -> str:
        target = by_label.get(match.group(1))
        if target is None:
            raise ValueError(f"caption refers to @{match.group(1)}, which is no declared table or figure")
        return f"`{target.stem}{REPORT_SUFFIX[target.kind]}`_"

    def link(match: re.Match[str]) -> str:
        text, url = match.groups()
        return f"`{text} <{url}>`__" if "://" in url else text

    text = _LINK.sub(link, markdown)
    text = _CODE.sub(r"``\1``", text)
    text = _MATH.sub(r":math:`\1`", text)
    return _XREF.sub(xref, text)


def report_caption(caption: Caption, captions: dict[tuple[str, str], Caption] | None = None) -> str:
    """The caption file of Snakemake's report (``workflow/report/<kind>/<stem>.rst``): the title with the
    file it captions, the caption, and for a table the table itself."""
    shown = f"results/{caption.kind}/{caption.stem}{REPORT_SUFFIX[caption.kind]}"
    lines = [
        f".. Generated from the {caption.kind.upper()} of src/vaeflow/analysis/{caption.analysis}.py by "
        "`python -m vaeflow.analysis.captions`; edit the caption there.",
        "",
        f"**{caption.title}** (``{shown}``)",
        "",
        rst_text(caption.text, captions),
    ]
    if caption.kind == "tables":
        lines += ["", ".. csv-table::", f"   :file: {shown}", "   :header-rows: 1", "   :encoding: utf-8"]
        lines += ["   :widths: auto", "   :class: text-xs"]
    return "\n".join(lines) + "\n"


def report_files(report_dir: str | Path = REPORT_DIR) -> dict[Path, str]:
    """Every caption file of Snakemake's report and the text it must hold."""
    captions = all_captions()
    return {
        Path(report_dir) / kind / f"{stem}.rst": report_caption(caption, captions)
        for (kind, stem), caption in captions.items()
    }


def write_report_captions(report_dir: str | Path = REPORT_DIR, check: bool = False) -> list[Path]:
    """Write the report's caption files (and remove those of no declared table or figure); with ``check``,
    write nothing and return the files that differ from what the modules declare."""
    wanted = report_files(report_dir)
    stale = [p for kind in KINDS for p in sorted((Path(report_dir) / kind).glob("*.rst")) if p not in wanted]
    differ = [p for p, text in wanted.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    if not check:
        for path in stale:
            path.unlink()
        for path in differ:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted[path], encoding="utf-8")
    return sorted(differ + stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--report-dir", default=REPORT_DIR)
    parser.add_argument("--check", action="store_true", help="write nothing; fail when a file differs")
    args = parser.parse_args(argv)
    changed = write_report_captions(args.report_dir, check=args.check)
    for path in changed:
        print(("differs: " if args.check else "wrote: ") + str(path))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
