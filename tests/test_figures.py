"""The conventions every table and figure of the site shares (vaeflow.analysis.figures): numbers for a
reader, the full CSV beside the reader's table, one colour per model, axes set by the typical runs,
alt text on every chart."""

import json
import math

import altair as alt
import numpy as np
import pandas as pd
import pytest

from vaeflow.analysis import figures
from vaeflow.analysis.figures import DASH, MINUS, NBSP, Shown

PM = f"{NBSP}±{NBSP}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3.4831, "3.48"),
        (10.409, "10.4"),
        (0.0123456, "0.0123"),
        (1234.5, "1,234"),
        (12608.0, "12,608"),
        (-0.138, f"{MINUS}0.138"),
        (9.996, "10.0"),
        (0.5, "0.500"),
        (100.0, "100"),
        (0.0, "0"),
        (1.234e-5, f"1.23e{MINUS}5"),
        (float("nan"), DASH),
        (None, DASH),
        (float("inf"), "∞"),
    ],
)
def test_sig_gives_three_significant_figures_and_a_dash_for_nan(value, expected):
    assert figures.sig(value) == expected


def test_sig_writes_the_sign_when_asked():
    assert figures.sig(0.2914, sign=True) == "+0.291" and figures.sig(-2.0, sign=True) == f"{MINUS}2.00"


def test_mean_sd_stays_on_one_line_with_the_sd_at_the_means_decimals():
    assert figures.mean_sd(3.4831, 0.0123) == f"3.48{PM}0.01"
    assert figures.mean_sd(3.4831, 0.0012) == f"3.48{PM}0.001"  # one significant figure rather than 0.00
    assert figures.mean_sd(10.41, 0.2) == f"10.4{PM}0.2"
    assert figures.mean_sd(3.4831) == "3.48" and figures.mean_sd(3.4831, float("nan")) == "3.48"
    assert figures.mean_sd(float("nan"), 0.1) == DASH
    assert " " not in figures.mean_sd(123.456, 7.89)  # nothing a browser may break the line at
    assert figures.mean_sd_of([2.0, 2.2]) == f"2.10{PM}0.14"  # sd with ddof 1: 0.1414
    assert figures.mean_sd_of([2.0, float("nan")]) == "2.00" and figures.mean_sd_of([]) == DASH


def test_readable_never_prints_nan_and_shortens_every_number():
    frame = pd.DataFrame(
        {
            "name": ["a", "b"],
            "float": [3.48312, np.nan],
            "count": [1, 12608],
            "flag": [True, False],
            "text": ["3.483 ± 0.012", "nan"],
            "mixed": ["3.619 (glow)", "-0.156 to -0.120"],
            "label": [0.5, 1.0],
            "whole": [2.0, np.nan],
            "exponent": ["1.87e+04", "2.13.0"],
        }
    )
    shown = figures.readable(frame)
    assert shown.to_dict("list") == {
        "name": ["a", "b"],
        "float": ["3.48", DASH],
        "count": ["1", "12,608"],
        "flag": ["yes", "no"],
        "text": [f"3.48{PM}0.01", DASH],
        "mixed": ["3.62 (glow)", f"{MINUS}0.156 to {MINUS}0.120"],
        "label": ["0.5", "1"],  # a column whose values have at most 3 figures keeps them (no "0.500")
        "whole": ["2", DASH],
        "exponent": ["18,700", "2.13.0"],  # a version string is no number
    }
    assert not shown.isin(["nan", "NaN"]).any().any()


def test_the_markdown_has_the_notes_and_a_link_to_the_full_csv_under_the_table(tmp_path):
    table = pd.DataFrame({"model": ["vae", "glow"], "bits/dim": [3.4831, np.nan], "long": ["x" * 50, "y"]})
    shown = Shown(figures.readable(table[["model", "bits/dim"]]), ["† a mark explained."])
    paths = figures.save_table(table, tmp_path / "demo", shown)
    assert [p.name for p in paths] == ["demo.csv", "demo.md"]
    # the CSV is the full table, every column as computed
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "demo.csv"), table)
    text = (tmp_path / "demo.md").read_text()
    head, rule, first, second, blank, legend = text.splitlines()
    assert head == "| model | bits/dim |"
    # as many dashes as the longest cell, whatever the header: text left-aligned, numbers right-aligned
    assert rule == "|:----|----:|"
    assert "3.48" in first and DASH in second and "nan" not in text and "long" not in text
    assert legend == (
        "[† a mark explained. Every column, in full: [demo.csv](results/tables/demo.csv)"
        '{download="demo.csv"}.]{.small .d-block .text-start}'
    )
    # without a reader's form the table itself is made readable
    figures.save_table(table, tmp_path / "plain")
    assert "nan" not in (tmp_path / "plain.md").read_text()


def test_pipes_in_cells_are_escaped():
    text = figures.table_markdown(Shown(pd.DataFrame({"a": ["x | y", "a long cell that | may wrap"]})))
    assert f"x{NBSP}\\|{NBSP}y" in text  # a short cell is also kept on one line
    assert "a long cell that \\| may wrap" in text


def test_short_codes_keep_short_labels_and_never_collide():
    codes = figures.short_codes(
        [
            "exact density of uniformly dequantised data",
            "iwae-20",
            "exact",
            "a very long label that nobody abbreviated",
            "another very long label that collides",
        ],
        {"exact density of uniformly dequantised data": "deq"},
    )
    assert codes["exact density of uniformly dequantised data"] == "deq" and codes["iwae-20"] == "iwae-20"
    assert len(set(codes.values())) == len(codes)
    assert figures.code_legend({"exact": "exact", "long label here": "llh"}) == "*llh*: long label here."


def test_one_colour_per_model_whatever_the_chart_shows():
    every = figures.model_scale(["glow", "vae", "maf"]).to_dict()
    some = figures.model_scale(["maf", "vae"]).to_dict()
    assert every["domain"] == ["vae", "maf", "glow"]  # the site's order, only the models present
    colour = dict(zip(every["domain"], every["range"]))
    assert dict(zip(some["domain"], some["range"])) == {m: colour[m] for m in ("vae", "maf")}
    assert all(figures.MODEL_COLOURS[m] == colour[m] for m in colour)
    assert len(set(figures.MODEL_COLOURS.values())) == len(figures.MODEL_COLOURS) == len(figures.MODELS)
    assert figures.BASELINE_COLOUR not in figures.MODEL_COLOURS.values()
    with_data = figures.model_scale(["vae", "new_model"], first={"test data": "black"}).to_dict()
    assert with_data["domain"] == ["test data", "vae", "new_model"]
    assert with_data["range"][:2] == ["black", figures.MODEL_COLOURS["vae"]]
    assert with_data["range"][2] == figures.EXTRA_COLOURS[0]  # an unknown model still gets a colour of its own


def test_the_typical_range_is_not_set_by_one_degenerate_run():
    # images: baselines at 2.53 (independent pixels) and 8 (uniform); one run at 3×10^5 bits/dim
    floor, ceiling = figures.typical_range([1.3, 1.4, 1.6, 2.0, 3e5], [2.53, 8.0])
    # typical range 1.3 to 8 (the highest baseline, above the median 2.0); three times that beyond it
    assert ceiling == pytest.approx(8.0 + 3 * (8.0 - 1.3)) and floor == pytest.approx(1.3 - 3 * (8.0 - 1.3))
    assert figures.padded_domain([1.3, 1.4, 3e5, 2.53, 8.0], ceiling, pad=0) == [1.3, 8.0]
    # a model merely worse than every baseline stays on the scale
    assert figures.typical_ceiling([3.9, 6.7, 7.3, 10.4], [2.53, 8.0]) > 10.4
    # a continuous dataset with one baseline: the median of models and baseline sets the top of the typical range
    assert figures.typical_ceiling([3.08, 3.5, 4.26, 4.45], [3.07]) == pytest.approx(3.5 + 3 * (3.5 - 3.07))
    # two models, one degenerate: the baselines keep the median (and so the axis) where the other one is
    assert figures.typical_ceiling([2.1, 1.5e5], [3.0, 8.0]) == pytest.approx(8.0 + 3 * (8.0 - 2.1))
    assert figures.typical_range([], []) == (-math.inf, math.inf)
    note = figures.off_scale_note([("vae seed 1", 3e5)], 14.7)
    assert note == "off scale (above 14.7 bits/dim): vae seed 1 at 300,000"
    assert figures.off_scale_note([], 14.7) == ""


def test_a_chart_without_alt_text_is_refused(tmp_path):
    chart = alt.Chart(pd.DataFrame({"x": [1, 2]})).mark_point().encode(x="x:Q")
    with pytest.raises(ValueError, match="no description"):
        figures.save_chart(chart, tmp_path / "bare")
    assert not list(tmp_path.iterdir())
    paths = figures.save_chart(chart.properties(description="Two points on a line."), tmp_path / "described")
    assert json.loads(paths[0].read_text())["description"] == "Two points on a line."
    assert 'aria-label="Two points on a line."' in paths[1].read_text()  # the static SVG carries it too


def test_a_column_with_one_value_on_every_row_goes_to_the_legend():
    table = pd.DataFrame({"model": ["vae", "maf"], "seeds": ["1", "1"], "batch": ["32", "64"]})
    rest, said = figures.constant_columns(table, ["seeds", "batch", "absent"])
    assert list(rest.columns) == ["model", "batch"] and said == "Every row: seeds 1."
    assert figures.constant_columns(rest, ["batch"]) == (rest, "")
    assert figures.readable_text("17301") == "17,301" and figures.readable_text("999") == "999"
