"""Saving figures and tables the site embeds: Altair spec + static SVG/PNG; CSV + markdown."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import vl_convert as vlc

from vaeflow.io import write_atomic, write_text_atomic


def save_chart(chart: alt.TopLevelMixin, stem: str | Path) -> list[Path]:
    """Write ``{stem}.vl.json`` (interactive spec) and ``{stem}.svg``/``{stem}.png`` (rendered offline by vl-convert)."""
    stem = Path(stem)
    spec = chart.to_json()
    paths = [
        write_text_atomic(stem.with_name(stem.name + ".vl.json"), spec),
        write_text_atomic(stem.with_name(stem.name + ".svg"), vlc.vegalite_to_svg(spec)),
        write_atomic(stem.with_name(stem.name + ".png"), lambda p: p.write_bytes(vlc.vegalite_to_png(spec, scale=2))),
    ]
    return paths


def save_table(table: pd.DataFrame, stem: str | Path) -> list[Path]:
    """Write ``{stem}.csv`` and ``{stem}.md`` (a pipe table the site includes)."""
    stem = Path(stem)
    return [
        write_atomic(stem.with_suffix(".csv"), lambda p: table.to_csv(p, index=False)),
        write_text_atomic(stem.with_suffix(".md"), table.to_markdown(index=False) + "\n"),
    ]
