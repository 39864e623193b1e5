"""Saving figures and tables the site embeds, and the conventions every one of them shares.

**Figures** (Altair spec + static SVG/PNG): one colour per model across the whole site
(:data:`MODEL_COLOURS`, used through :func:`model_colours`), baselines in grey
(:data:`BASELINE_COLOUR`), and alt text on every chart (its Vega-Lite ``description``, which
:func:`save_chart` requires and the site's chart embed uses). A bits/dim axis is set by the typical
runs, not by a degenerate one: :func:`typical_ceiling` gives the top of a panel's typical range and
every value above it is marked and named (:func:`off_scale_note`).

**Tables** (CSV + markdown): the CSV keeps every column as the analysis computed it, for machines
and Snakemake's report; the markdown the site includes is the reader's form (:class:`Shown`): 3
significant figures, "mean ± sd" on one line, a dash "–" (never ``nan``) where a number does not
apply, and legend notes under the table with a link to the full CSV (:func:`table_markdown`).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import vl_convert as vlc

from vaeflow.io import write_atomic, write_text_atomic
from vaeflow.models import registry

# --- figures ---------------------------------------------------------------------------------------

#: the models in the order every figure and table lists them: the registry's (the VAEs, then the flows,
#: each by the year of its paper; :func:`vaeflow.models.registry`)
MODELS = tuple(registry())
#: the site's model colours, given out in :data:`MODELS` order, so that a model has one colour on every
#: figure (the VAEs come first and get the warm ones); never grey or black, which mark the baselines and
#: the test data
PALETTE = (
    "#e15759",
    "#f28e2b",
    "#b07aa1",
    "#59a14f",
    "#4e79a7",
    "#76b7b2",
    "#9c755f",
    "#b6992d",
    "#ff9da7",
    "#17becf",
    "#8c564b",
    "#bcbd22",
    "#1f77b4",
    "#d62728",
)
MODEL_COLOURS = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(MODELS)}
#: how the site names each model in text, tables and legends (its class's ``label``); the site's variables
#: give a model by this name, never by its configuration id (a sentence names it by ``prose_name``)
MODEL_LABELS = {name: card.label for name, card in registry().items()}
#: colours for ids the registry does not know, in order of their names
EXTRA_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")
BASELINE_COLOUR = "gray"
DATA_COLOUR = "black"
#: pixels between a panel's edge and its outermost data point, for axes set by the data or a fixed [0, 1]:
#: the point marks at the ends of the range lie inside the plot
EDGE_PADDING = 8
#: how far beyond a panel's typical range its axis reaches, in units of that range: the typical range keeps
#: at least a quarter of the axis, whatever lies beyond
OFF_SCALE_SPAN = 3.0


def model_order(models: Iterable[str]) -> list[str]:
    """The distinct ``models`` in the site's order: :data:`MODELS` first, then any other by name."""
    found = set(models)
    return [m for m in MODELS if m in found] + sorted(found - set(MODELS))


def model_label(model: str) -> str:
    """A model as the site names it (:data:`MODEL_LABELS`); an id the study does not know, as it is."""
    return MODEL_LABELS.get(model, model)


def model_colours(models: Iterable[str]) -> dict[str, str]:
    """Each model's colour: :data:`MODEL_COLOURS`, and :data:`EXTRA_COLOURS` for the unknown ones."""
    ordered = model_order(models)
    extra = iter([m for m in ordered if m not in MODEL_COLOURS])
    colours = {m: MODEL_COLOURS[m] for m in ordered if m in MODEL_COLOURS}
    for i, model in enumerate(extra):
        colours[model] = EXTRA_COLOURS[i % len(EXTRA_COLOURS)]
    return colours


def model_scale(models: Iterable[str], first: dict[str, str] | None = None) -> alt.Scale:
    """The colour scale of the models present (the legend lists only them, each in its own colour);
    ``first``: other series before them with their colours, e.g. ``{"test data": DATA_COLOUR}``."""
    colours = {**(first or {}), **model_colours(m for m in models if m not in (first or {}))}
    return alt.Scale(domain=list(colours), range=list(colours.values()))


def model_color(
    models: Iterable[str],
    field: str = "model",
    title: str | None = "model",
    first: dict[str, str] | None = None,
    **kw: Any,
) -> alt.Color:
    """Colour by model with the site's one scale (:func:`model_scale`)."""
    return alt.Color(f"{field}:N", title=title, scale=model_scale(models, first), **kw)


def typical_range(values: Iterable[float], references: Iterable[float] = ()) -> tuple[float, float]:
    """``(floor, ceiling)`` of the axis of a panel whose typical values are ``values`` (one per run or model)
    and whose reference lines (baselines) are ``references``. The typical range runs from the lowest of them
    all to the highest reference or the median of values and references together, whichever is higher; the
    axis reaches :data:`OFF_SCALE_SPAN` times that range beyond it on either side. A value outside is off
    scale: a run at 3×10⁵ bits/dim among runs at 2–8 never sets the axis, while a model merely worse than
    the baselines stays on it."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    refs = np.asarray([r for r in references if r is not None and np.isfinite(r)], dtype=float)
    both = np.concatenate([finite, refs])
    if both.size == 0:
        return -math.inf, math.inf
    top = float(max(np.median(both), refs.max() if refs.size else -math.inf))
    low = float(both.min())
    span = top - low if top > low else max(abs(top) * 0.1, 1e-3)
    return low - OFF_SCALE_SPAN * span, top + OFF_SCALE_SPAN * span


def typical_ceiling(values: Iterable[float], references: Iterable[float] = ()) -> float:
    """The top of the axis of :func:`typical_range`: values above it are off scale."""
    return typical_range(values, references)[1]


def padded_domain(
    values: Iterable[float], ceiling: float = math.inf, pad: float = 0.05, floor: float = -math.inf
) -> list[float]:
    """``[low, high]`` around the finite ``values`` within ``[floor, ceiling]``, padded by ``pad`` of the range."""
    shown = [float(v) for v in values if v is not None and np.isfinite(v) and floor <= v <= ceiling]
    if not shown:
        return [0.0, 1.0]
    low, high = min(shown), max(shown)
    margin = pad * (high - low) if high > low else max(abs(high) * 0.05, 0.05)
    return [low - margin, high + margin]


def off_scale_note(
    named: Sequence[tuple[str, float]],
    ceiling: float,
    unit: str = "bits/dim",
    below: Sequence[tuple[str, float]] = (),
    floor: float = -math.inf,
) -> str:
    """``"off scale (above 14.2 bits/dim): vae seed 1 at 310,000"``, or ``""`` when nothing is; ``below``:
    what lies below ``floor``, said the same way."""
    parts = []
    if named:
        parts.append(f"off scale (above {sig(ceiling)} {unit}): " + ", ".join(f"{n} at {sig(v)}" for n, v in named))
    if below:
        parts.append(f"below the scale ({sig(floor)} {unit}): " + ", ".join(f"{n} at {sig(v)}" for n, v in below))
    return "; ".join(parts)


def svg_with_alt(svg: str, description: str) -> str:
    """The SVG with its alt text: ``role="img"`` and ``aria-label`` on the root element, and a ``<title>``."""
    text = html.escape(" ".join(description.split()), quote=True)
    end = svg.index(">", svg.index("<svg"))
    return f'{svg[:end]} role="img" aria-label="{text}"><title>{text}</title>{svg[end + 1 :]}'


def save_chart(chart: alt.TopLevelMixin, stem: str | Path) -> list[Path]:
    """Write ``{stem}.vl.json`` (interactive spec) and ``{stem}.svg``/``{stem}.png`` (rendered offline by vl-convert).

    The chart must carry its alt text as its top-level ``description`` (``chart.properties(description=...)``):
    the site's embed reads it for the chart's ``aria-label`` and the fallback image's ``alt``, and the SVG
    carries it as its ``aria-label`` and ``<title>`` (:func:`svg_with_alt`)."""
    stem = Path(stem)
    description = getattr(chart, "description", alt.Undefined)
    if description is alt.Undefined or not str(description).strip():
        raise ValueError(
            f"{stem.name}: the chart has no description (its alt text); "
            "set chart.properties(description=...) to say what it shows"
        )
    spec = chart.to_json()
    paths = [
        write_text_atomic(stem.with_name(stem.name + ".vl.json"), spec),
        write_text_atomic(
            stem.with_name(stem.name + ".svg"), svg_with_alt(vlc.vegalite_to_svg(spec), str(description))
        ),
        write_atomic(stem.with_name(stem.name + ".png"), lambda p: p.write_bytes(vlc.vegalite_to_png(spec, scale=2))),
    ]
    return paths


# --- tables ----------------------------------------------------------------------------------------

DASH = "–"  # what does not apply, or is not known
NBSP = "\u00a0"  # keeps "mean ± sd" on one line
MINUS = "−"
PLUS_MINUS = f"{NBSP}±{NBSP}"


#: short codes the site's tables use for the long names of quantities (a legend under each table spells them out)
QUANTITY_CODES = {
    "exact density of uniformly dequantised data": "deq",
    "exact discrete likelihood": "discrete",
    "variational-dequantisation bound": "VD bound",
}


def _decimals(value: float, digits: int) -> int:
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def sig(value: Any, digits: int = 3, sign: bool = False) -> str:
    """``value`` to ``digits`` significant figures for a reader: integer digits are never rounded away
    (1234.5 → "1,235"), thousands are separated, a minus is a minus sign, very small values get an exponent
    (1.23e−5); ``sign`` writes "+" before a positive value. NaN and None are a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    v = float(value)
    if math.isnan(v):
        return DASH
    if math.isinf(v):
        return ("" if v > 0 else MINUS) + "∞"
    if v == 0:
        return "0"
    if abs(v) < 1e-4:
        text = f"{v:.{digits - 1}e}"
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    else:
        decimals = _decimals(v, digits)
        rounded = round(v, decimals)
        if rounded != 0 and _decimals(rounded, digits) < decimals:  # 9.996 → 10.0, not 10.00
            decimals = _decimals(rounded, digits)
        text = f"{round(v, decimals):,.{decimals}f}"
    if sign and v > 0:
        text = "+" + text
    return text.replace("-", MINUS)


def mean_sd(mean: Any, sd: Any = math.nan, digits: int = 3) -> str:
    """ "mean ± sd" on one line: the mean to ``digits`` significant figures and the sd to the same decimal
    places (or to one significant figure where those would show 0); the mean alone without an sd; a dash
    without a mean."""
    if mean is None or not np.isfinite(float(mean)):
        return sig(mean, digits)
    text = sig(mean, digits)
    if sd is None or not np.isfinite(float(sd)):
        return text
    m, s = float(mean), abs(float(sd))
    decimals = _decimals(m, digits) if m != 0 and abs(m) >= 1e-4 else None
    if decimals is not None and (round(s, decimals) > 0 or s == 0):
        spread = f"{s:,.{decimals}f}"
    else:
        spread = sig(s, 1)
    return text + PLUS_MINUS + spread


def mean_sd_of(values: Iterable[float], digits: int = 3) -> str:
    """:func:`mean_sd` of the finite values (sd with ddof 1; the mean alone for one value; a dash for none)."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if finite.size == 0:
        return DASH
    return mean_sd(finite.mean(), finite.std(ddof=1) if finite.size > 1 else math.nan, digits)


_DECIMAL = re.compile(r"(?<![\w.,])([-+−]?)(\d+\.\d+)(?![\w.])")
_MEAN_SD = re.compile(r"^\s*(-?\d[\d,]*(?:\.\d+)?) ± (\d[\d,]*(?:\.\d+)?|nan)(.*)$")
_EXPONENT = re.compile(r"^\s*[-+]?\d+(?:\.\d+)?[eE][-+]?\d+\s*$")
_MISSING = {"nan", "NaN", "None", "<NA>", "nan ± nan", ""}


def _short_number(match: re.Match[str]) -> str:
    """A decimal in a text cell, shortened to 3 significant figures (never lengthened)."""
    sign, number = match.group(1), match.group(2)
    digits = len(number.replace(".", "").lstrip("0"))
    if digits <= 3:
        return (MINUS if sign == "-" else sign) + number
    text = sig(float(number)).lstrip(MINUS)
    return {"-": MINUS, "−": MINUS, "+": "+"}.get(sign, "") + text


def readable_text(text: str) -> str:
    """A text cell for a reader: "nan" is a dash, decimals have 3 significant figures, "a ± b" stays on one line."""
    if text.strip() in _MISSING:
        return DASH
    pair = _MEAN_SD.match(text)
    if pair:  # "3.483 ± 0.012 (2 of 3 seeds)": the sd to the mean's decimals
        mean, sd, rest = pair.groups()
        cell = mean_sd(float(mean.replace(",", "")), math.nan if sd == "nan" else float(sd.replace(",", "")))
        return cell + (readable_text(rest) if rest.strip() else rest)
    if _EXPONENT.match(text):  # "1.87e+04" → "18,700"
        return sig(float(text))
    if re.fullmatch(r"\d{4,}", text.strip()):  # "17301" → "17,301"
        return f"{int(text):,}"
    text = _DECIMAL.sub(_short_number, text)
    text = re.sub(r"\s±\s(?:nan|–)(?![\w.])", "", text)  # no sd: the mean alone
    return re.sub(r"(?<![\w.])nan(?![\w.])", DASH, text).replace(" ± ", PLUS_MINUS)


def readable_column(values: pd.Series) -> pd.Series:
    """One column for a reader. Numbers: integers with thousands separated; decimals to 3 significant figures,
    except a column whose every value has at most 2 (settings such as 0.5, 1, 0.75) keeps them as they are;
    NaN a dash.
    Booleans: yes/no. Text: :func:`readable_text`."""
    if values.dtype == bool:
        return values.map(lambda v: "yes" if v else "no")
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.map(lambda v: f"{int(v):,}" if pd.notna(v) else DASH)
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values[np.isfinite(values.astype(float))]
        if len(finite) and (finite == finite.round()).all() and (finite.abs() < 1e15).all():
            return values.map(lambda v: f"{int(v):,}" if np.isfinite(v) else sig(v))
        short = len(finite) and all(float(f"{v:.2g}") == v for v in finite)  # labels such as 0.5, 1, 0.75
        return values.map(
            lambda v: (f"{v:,.3g}".replace("-", MINUS) if np.isfinite(v) else sig(v)) if short else sig(v)
        )
    return values.map(
        lambda v: (
            DASH
            if v is None or (isinstance(v, float) and math.isnan(v))
            else readable_text(str(v))
            if isinstance(v, str)
            else ("yes" if v else "no")
            if isinstance(v, (bool, np.bool_))
            else sig(v)
            if isinstance(v, (float, np.floating))
            else f"{v:,}"
            if isinstance(v, (int, np.integer))
            else readable_text(str(v))
        )
    )


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column of ``frame`` as a reader's text (:func:`readable_column`)."""
    return pd.DataFrame({column: readable_column(frame[column]) for column in frame.columns})


@dataclass
class Shown:
    """A table as the site shows it: its cells as text (``table``) and the legend under it (``notes``:
    sentences that explain its marks, codes and what its columns hold). The CSV is the full table."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)


#: cells up to this many characters are kept on one line
UNBROKEN = 16
_MARKUP = re.compile(r"\*\*|\^[^^]*\^")  # bold, and superscript marks
_NUMERIC_CELL = re.compile(
    rf"^[-+{MINUS}]?[\d.,]+(?:[eE][-+{MINUS}]?\d+)?(?:{NBSP}±{NBSP}[\d.,e{MINUS}]+)?\s*[^\w\s]*$"
)


def table_markdown(shown: Shown | pd.DataFrame, csv: str | None = None) -> str:
    """The pipe table of ``shown`` (numbers right-aligned), its notes in one small paragraph under it, and a
    download link to ``csv`` (a path relative to the site's pages, e.g. ``results/tables/x.csv``).

    Pandoc sizes the columns of a wide pipe table by the dashes of the line under its header: here as many as
    the longest cell of the column (without markup), whatever its header, so that a long header wraps rather
    than a number."""
    if isinstance(shown, pd.DataFrame):
        shown = Shown(readable(shown))
    table = shown.table.astype(str).apply(lambda column: column.str.replace("|", r"\|", regex=False))
    # a short cell ("distilled (maf)", "VD bound", "1 × 32") never wraps; a long one or a range ("a to b") may
    table = table.apply(
        lambda column: column.map(lambda c: c.replace(" ", NBSP) if len(c) <= UNBROKEN and " to " not in c else c)
    )
    heads = [str(c).replace("|", r"\|") for c in table.columns]
    rule = []
    for column in table.columns:
        cells = [_MARKUP.sub("", c) for c in table[column]]
        visible = [c.replace("**", "").replace("^", "") for c in table[column]]  # as wide as a reader sees it
        numeric = [c for c in cells if c != DASH]
        dashes = "-" * max(3, max((len(c) for c in visible), default=0))
        rule.append(dashes + ":" if numeric and all(_NUMERIC_CELL.match(c) for c in numeric) else ":" + dashes)
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table.itertuples(index=False)]
    text = "\n".join(lines) + "\n"
    legend = list(shown.notes)
    if csv:
        name = Path(csv).name
        legend.append(f'Every column, in full: [{name}]({csv}){{download="{name}"}}.')
    if legend:  # a small paragraph, left-aligned also where the float centres its content
        text += "\n[" + " ".join(legend) + "]{.small .d-block .text-start}\n"
    return text


def save_table(table: pd.DataFrame, stem: str | Path, shown: Shown | pd.DataFrame | None = None) -> list[Path]:
    """Write ``{stem}.csv`` (``table``, every column) and ``{stem}.md`` (the reader's form the site includes:
    ``shown``, or ``table`` made :func:`readable`), the markdown with a link to the CSV as the site serves it
    (``results/tables/{name}.csv``)."""
    stem = Path(stem)
    markdown = table_markdown(shown if shown is not None else table, f"results/tables/{stem.name}.csv")
    return [
        write_atomic(stem.with_suffix(".csv"), lambda p: table.to_csv(p, index=False)),
        write_text_atomic(stem.with_suffix(".md"), markdown),
    ]


def constant_columns(table: pd.DataFrame, columns: Iterable[str]) -> tuple[pd.DataFrame, str]:
    """``table`` without those of ``columns`` that hold one value on every row, and a sentence that gives
    them (``"Every row: seeds 1, batch 32."``), or ``""`` when none is constant."""
    same = [c for c in columns if c in table.columns and len(table) and table[c].astype(str).nunique() == 1]
    if not same:
        return table, ""
    said = ", ".join(f"{c} {table[c].astype(str).iloc[0]}" for c in same)
    return table.drop(columns=same), f"Every row: {said}."


def short_codes(labels: Iterable[str], known: dict[str, str] | None = None, longest: int = 14) -> dict[str, str]:
    """A short code for each label: its code in ``known``; else the label itself where it is short (at most
    ``longest`` characters), the initials of its words where it is not. Codes never collide."""
    codes: dict[str, str] = {}
    for label in dict.fromkeys(labels):
        if label in (known or {}):
            code = known[label]
        elif len(label) <= longest:
            code = label
        else:
            code = "".join(w[0] for w in re.findall(r"[A-Za-z]+", label)).lower()
        base, n = code, 2
        while code in codes.values():
            code, n = f"{base}{n}", n + 1
        codes[label] = code
    return codes


def code_legend(codes: dict[str, str]) -> str:
    """``"deq: exact density of uniformly dequantised data."``: the codes that stand for a longer label."""
    spelled = [f"*{code}*: {label}" for label, code in codes.items() if code != label]
    return ("; ".join(spelled) + ".") if spelled else ""
