"""Interactive charts on the website with no network: Vega-Lite specs drawn by a local vega-embed.

A page shows figure ``<stem>`` by including ``results/figures/<stem>.chart.md``. That fragment
is not an analysis output: ``stage`` writes it from the figure's Vega-Lite spec
(``<stem>.vl.json``) as a raw-HTML block that holds the spec inline and draws it with
``vegaEmbed`` (SVG renderer), with the static ``<stem>.svg`` as the no-script fallback; the spec's
``description`` is the chart's alt text (``aria-label``, and the fallback's ``alt``).
vega, vega-lite and vega-embed come from one file, ``vega-bundle.js``, that vl-convert
builds offline and the site serves itself, so opening a page requests nothing from
another host, from a web server or straight from disk.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

BUNDLE = "vega-bundle.js"
CHART_SUFFIX = ".chart.md"
_STEM = re.compile(r"^results/figures/([\w-]+)\.chart\.md$")


def chart_stem(rel: str) -> str | None:
    """``learning_curves`` for ``results/figures/learning_curves.chart.md``, else ``None``."""
    match = _STEM.match(rel)
    return match.group(1) if match else None


def chart_sources(stem: str) -> list[str]:
    """The analysis outputs a chart fragment is made from: its spec and its static SVG."""
    return [f"results/figures/{stem}.vl.json", f"results/figures/{stem}.svg"]


def alt_text(stem: str, spec: dict) -> str:
    """The chart's alt text: its Vega-Lite ``description`` (every analysis sets one), else its name."""
    description = spec.get("description")
    return " ".join(str(description).split()) if isinstance(description, str) and description.strip() else stem


def chart_fragment(stem: str, spec: dict) -> str:
    """The raw-HTML block that draws ``spec`` where the page includes it; its ``aria-label`` and the
    no-script image's ``alt`` are the chart's :func:`alt_text`."""
    element = f"vega-{stem}"
    # inside <script>, "</" would end the element early: JSON allows "<\/" for the same text
    inline = json.dumps(spec, separators=(",", ":"), sort_keys=True).replace("</", "<\\/")
    label = html.escape(alt_text(stem, spec), quote=True)
    return (
        "```{=html}\n"
        f'<div class="vega-chart" id="{element}" role="img" aria-label="{label}"></div>\n'
        f'<script type="application/json" id="{element}-spec">{inline}</script>\n'
        "<script>\n"
        f'vegaEmbed("#{element}", JSON.parse(document.getElementById("{element}-spec").textContent),\n'
        '  {renderer: "svg", actions: false}).catch(function (error) { console.error("chart '
        + stem
        + ':", error); });\n'
        "</script>\n"
        f'<noscript><img src="results/figures/{stem}.svg" alt="{label}"></noscript>\n'
        "```\n"
    )


def write_chart(stem: str, spec_path: Path, out: Path) -> None:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict) or "$schema" not in spec:
        raise ValueError(f"{spec_path} is not a Vega-Lite spec (no $schema); rerun the analysis that writes it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(chart_fragment(stem, spec), encoding="utf-8")


def write_bundle(out: Path) -> None:
    """vega, vega-lite and vega-embed as one script (globals ``vega``, ``vegaLite``, ``vegaEmbed``)."""
    import vl_convert

    out.write_text(vl_convert.javascript_bundle(), encoding="utf-8")
