"""The likelihood analysis: exact likelihoods against bounds.

Test bits/dim per model and dataset; the ELBO → IWAE-k curve of the bound models against the
flows' exact values on the same test examples; train/val/test gaps; per-class bits/dim on the
labelled datasets; learning curves. Flows give the exact density of dequantised data; VAEs
(and Flow++ on images) give bounds. Every number carries the name of the quantity it is.

Every model is measured against its dataset's sanity baselines (``results/{dataset}/baselines.json``,
:mod:`vaeflow.evaluation.baselines`): they are rows of the likelihood table, reference lines on
the figures, and each model's margin over the dataset's *reference* baseline (independent pixels
on images, the fitted Gaussian on real vectors) is reported, with the reasons a model may not
beat it written from the results.

Comparative conclusions come from :mod:`vaeflow.analysis.comparisons`: paired comparisons on the same
test images with intervals and the seed spread, written as sentences. Each run's ``converged`` (early
stopping ended it) or not (its step ceiling did) is marked in the tables and named in the prose.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from vaeflow.analysis.figures import (
    BASELINE_COLOUR,
    DASH,
    QUANTITY_CODES,
    Shown,
    code_legend,
    mean_sd_of,
    model_color,
    model_label,
    model_order,
    off_scale_note,
    padded_domain,
    readable,
    short_codes,
    sig,
    typical_ceiling,
    typical_range,
)
from vaeflow.analysis.runs import ProbeResult

# The tables and figures this analysis writes (results/tables/<stem>.csv and .md, results/figures/<stem>.*),
# each with its caption, written only here: a title (its heading in Snakemake's report) and the caption
# (Quarto Markdown). The site and the report show it (vaeflow.analysis.captions).
TABLES = {
    "likelihood": {
        "title": "Test bits/dim of every model on every dataset",
        "caption": (
            "Test bits/dim of every model (rows) on every dataset (columns), mean ± sd over training seeds "
            "(lower is better), and the dataset's sanity baselines (below), exact likelihoods, as rows of "
            "their own. *quantity* says what each number is; on images every model's is a lower bound on the "
            "discrete likelihood in its importance-weighted form with $k$ draws: the VAEs' IWAE-$k$, Flow++'s "
            "variational-dequantisation bound (IW-$k$) and the other flows' bound with the uniform dequantiser as "
            "the proposal (IW-uniform-$k$); a flow whose density is itself estimated gives its density of "
            "dequantised data (deq), and on the 2-D data a flow's number is its exact density. The legend "
            "under the table explains its marks (bold, †, ‡) and codes; the CSV linked there has every column, "
            "among them the single-draw bound, the margin over the reference "
            "baseline, the seeds the step ceiling stopped and the parameter counts."
        ),
    },
    "likelihood_comparisons": {
        "title": "Paired comparisons with intervals: which differences are beyond noise",
        "caption": (
            "Paired comparisons on the same test images: neighbours in each dataset's ranking by mean test "
            "bits/dim, the best VAE against the best flow, the VAE against the best exact flow, the pairs the "
            "[discussion](discussion.qmd) asks about, and every model against the dataset's reference "
            "baseline. *A − B* is in bits/dim (negative: A is better), with its 95% paired $t$-interval over "
            "test images; *seed sd A / B* gives the sd over seeds of each model's mean test bits/dim (– with "
            "one seed) and *per-seed A − B* the range of the differences of per-seed means over every pair of "
            "seeds. *verdict* says *within noise* when the interval contains 0 or the difference is smaller "
            "than the larger of the two seed sds. The two models' own mean test bits/dim are in "
            "@tbl-likelihood and in the CSV linked under the table."
        ),
    },
    "models": {
        "title": "Every model, its cost and how it was trained",
        "caption": (
            "Every model on every dataset, averaged over seeds: parameter count, how it was trained (maximum "
            "likelihood, a variational bound, or density distillation from a trained teacher; as a code the "
            "legend under the table spells out), the training steps its seeds ran (a range where early "
            "stopping ended them apart), their step ceiling and whether they converged (the CSV names the "
            "seeds the ceiling stopped), test bits/dim with the quantity it is, and the throughput of "
            "sampling and of density evaluation."
        ),
    },
    "likelihood_gaps": {
        "title": "Generalisation: train, validation and test bits/dim",
        "caption": (
            "Train, validation and test bits/dim of one and the same quantity per model, mean ± sd over "
            "seeds: the exact density of dequantised data for the flows, the single-draw bound (the ELBO, the "
            "objective the VAEs were trained on) for the bound models. *gap test − train* is the "
            "generalisation gap: positive when the model fits its training images better than unseen ones. "
            "The validation column is the one the checkpoint was chosen on."
        ),
    },
    "likelihood_iwae": {
        "title": "How tight are the bounds? From the ELBO to IWAE-k",
        "caption": (
            "IWAE-$k$ bits/dim of each bound model at every $k$ of the probe, mean ± sd over seeds, on the "
            "probe's test examples (lower is better; $k = 1$ is the ELBO, or Flow++'s single-draw "
            "variational-dequantisation bound). A dash is a $k$ beyond that model's largest. The last two "
            "columns are the best exact flow's bits/dim on the same examples, with the flow named, and the "
            "dataset's reference baseline (independent pixels on images, the Gaussian on the 2-D data) on the "
            "same examples."
        ),
    },
    "likelihood_per_class": {
        "title": "Bits/dim per class",
        "caption": (
            "Test bits/dim per class on the two labelled datasets (the 8×8 digits and MNIST), mean over "
            "seeds, of each model's headline test quantity (as in @tbl-likelihood); *easiest* and *hardest* "
            "name the classes with the lowest and the highest bits/dim."
        ),
    },
}
FIGURES = {
    "likelihood_overview": {
        "title": "Test bits/dim of every model against the baselines",
        "caption": (
            "Test bits/dim (lower is better) of every model on each image dataset, one panel per dataset: a "
            "small open circle per training seed, a line across the seeds and the mean over seeds as a large "
            "mark (circle: exact likelihood, diamond: bound), each model in its colour on every figure of the "
            "site. The grey dotted vertical lines, labelled, are the dataset's sanity baselines (independent "
            "pixels, the reference, and uniform); a seed far beyond the others is drawn as a triangle at the "
            "right edge with its value and named in red under the panel title."
        ),
    },
    "learning_curves": {
        "title": "Learning curves",
        "caption": (
            "Training (solid) and validation (dashed) bits/dim against training step for every run, one panel "
            "per dataset, one colour per model (the same on every figure). The checkpoint kept is the one "
            "with the best validation bits/dim. The grey dotted rules, labelled, are the dataset's sanity "
            "baselines (uniform and independent pixels on images, the fitted Gaussian on the 2-D data) at "
            "their validation bits/dim. Each axis covers the baselines and where the runs ended up, so a "
            "run's first evaluations may enter from the top; a run whose best lies far beyond the others (or "
            "whose training loss lies far below them, as a distilled student's) is named in red under the "
            "panel's title, so no diverging run sets a panel's axis."
        ),
    },
    "likelihood_iwae_curve": {
        "title": "From the ELBO to IWAE-k",
        "caption": (
            "The bound models' IWAE-$k$ bits/dim against the number of importance samples $k$ (log scale), "
            "one panel per dataset, means over seeds; each dashed horizontal rule is an exact flow's bits/dim "
            "on the same test examples, in that model's colour; the grey dotted rule, labelled, is the "
            "dataset's reference sanity baseline on the same examples. A curve falling with $k$ is the bound "
            "tightening towards $\\log p(x)$. A model far above the others is named in red under the panel's "
            "title instead of setting its axis."
        ),
    },
    "likelihood_per_class": {
        "title": "Bits/dim per class",
        "caption": (
            "Test bits/dim per digit class, one line per model, one panel per labelled dataset (means over "
            "seeds; independent y axes); the grey dotted lines, labelled, are the dataset's sanity baselines "
            "per class. A model far above the others is named in red under the panel's title instead of "
            "setting its axis. Where the lines run parallel, the ranking of the classes is a property of the "
            "data, not of the architecture."
        ),
    },
}

#: marks of the likelihood table's cells, explained in its legend
NOT_BEATING = "†"
CEILING = "‡"


def load_runs(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """One row per trained run, from its metrics.json and the train.json beside it (training time and memory
    are the cost analysis's: this analysis reads nothing that a byte-identical retrain changes).

    From train.json: the run's step ceiling (``ceiling``, ``training.steps`` of its config) and the dataset's
    parameter budget (``parameter_budget``, NaN where the config set none); from metrics.json, besides the
    scores, whether early stopping ended the run (``converged``) or the ceiling did (``stopped_by``)."""
    rows = []
    for path in map(Path, metrics_paths):
        m: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        summary = path.with_name("train.json")
        if not summary.is_file():
            raise FileNotFoundError(
                f"{summary} does not exist: the likelihood analysis reads each run's step "
                "ceiling and parameter budget from the train.json beside its metrics.json; "
                "retrain that run"
            )
        run = json.loads(summary.read_text(encoding="utf-8"))["run"]
        missing = [key for key in ("converged", "stopped_by") if key not in m]
        if missing:
            raise ValueError(
                f"{path} has no {' or '.join(missing)} (it predates early stopping); rerun its evaluation "
                f"(snakemake {path} --forcerun evaluate)"
            )
        test = m["test"]
        rows.append(
            {
                "dataset": m["dataset"],
                "model": m["model"],
                "seed": m["seed"],
                "exact": m["exact"],
                "bound": test["bound"],
                "test_bpd": test["bits_per_dim"],
                # the single-draw bound (a VAE's ELBO; a flow's E_u[log p(x + u)] on images)
                "test_elbo_bpd": test.get("elbo_bits_per_dim", test.get("single_draw_bits_per_dim")),
                "val_bpd": m["val"]["bits_per_dim"],
                "train_bpd": m["train"]["bits_per_dim"],
                "parameters": m["parameters"],
                "parameter_budget": run.get("parameter_budget", math.nan),
                "steps": m["steps"],
                "ceiling": run["training"]["steps"],
                "best_step": m.get("best_step", math.nan),
                "converged": bool(m["converged"]),
                "stopped_by": m["stopped_by"],
                "trained_by": m.get("trained_by", ""),
                "samples_per_s": m["throughput"]["samples_per_s"],
                "density_evals_per_s": m["throughput"]["density_evals_per_s"],
                "nonfinite_samples": m.get("nonfinite_samples", 0),
                "curves": str(path.with_name("curves.csv")),
                "scores": str(path.with_name("test_scores.npz")),
                "num_dims": m["num_dims"],
            }
        )
    runs = pd.DataFrame(rows)
    if runs.empty:
        raise ValueError("no runs given to the likelihood analysis; check the metrics paths")
    if runs[["test_bpd", "val_bpd", "train_bpd"]].isna().any().any():
        raise ValueError("a run's metrics hold a missing bits/dim value; rerun its evaluation")
    return runs.sort_values(["dataset", "model", "seed"]).reset_index(drop=True)


def _mean_sd(values: pd.Series) -> str:
    if values.isna().all():
        return "–"
    sd = values.std(ddof=1) if values.count() > 1 else float("nan")
    return f"{values.mean():.3f} ± {sd:.3f}" if pd.notna(sd) else f"{values.mean():.3f}"


def load_baselines(paths: list[str | Path]) -> pd.DataFrame:
    """One row per (dataset, baseline) from each dataset's baselines.json (rule ``baselines``):
    bits/dim per split, parameters, the quantity, whether it is the dataset's reference, and the
    file of its per-example test log-likelihoods."""
    rows = []
    for path in map(Path, paths):
        found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        for entry in found["baselines"]:
            bpd = entry["bits_per_dim"]
            rows.append(
                {
                    "dataset": found["dataset"],
                    "baseline": entry["name"],
                    "label": entry["label"],
                    "quantity": entry["quantity"],
                    "parameters": int(entry["parameters"]),
                    "reference": bool(entry["reference"]),
                    "discrete": found["levels"] is not None,
                    "train_bpd": bpd["train"],
                    "val_bpd": bpd["val"],
                    "test_bpd": bpd["test"],
                    "scores": str(path.parent / found["test_scores"]),
                    "num_dims": int(found["num_dims"]),
                }
            )
    baselines = pd.DataFrame(rows)
    if baselines.empty:
        raise ValueError(
            "no baselines given to the likelihood analysis: pass every dataset's "
            "results/<dataset>/baselines.json (rule baselines) as the notebook parameter `baselines`"
        )
    references = baselines.groupby("dataset")["reference"].sum()
    if (references != 1).any():
        bad = ", ".join(references[references != 1].index)
        raise ValueError(
            f"baselines of {bad}: each dataset needs exactly one reference baseline; "
            f"rerun rule baselines for it (snakemake --forcerun baselines)"
        )
    return baselines.reset_index(drop=True)


def baseline_margins(runs: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model): the mean test bits/dim over seeds, the dataset's reference baseline
    and the margin model − baseline (negative: the model is better), whether the model beats it,
    and what the reasons it might not depend on (exact or bound, how it was trained, whether a run of it
    was stopped by its step ceiling rather than by early stopping, discrete or real-valued data)."""
    references = baselines[baselines["reference"]].set_index("dataset")
    missing = sorted(set(runs["dataset"]) - set(references.index))
    if missing:
        raise ValueError(
            f"no baselines for dataset(s) {', '.join(missing)}: add results/<dataset>/baselines.json "
            f"(snakemake results/{missing[0]}/baselines.json) to the likelihood analysis's `baselines`"
        )
    rows = []
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        reference = references.loc[dataset]
        test = float(group["test_bpd"].mean())
        margin = test - float(reference["test_bpd"])
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "test_bpd": test,
                "baseline": reference["label"],
                "baseline_bpd": float(reference["test_bpd"]),
                "margin": margin,
                "beats": bool(margin < 0),
                "exact": bool(group["exact"].all()),
                "discrete": bool(reference["discrete"]),
                "distilled": bool(group["trained_by"].str.startswith("density distillation").any()),
                "ceiling": bool((~group["converged"].astype(bool)).any()),
                # the evidence the findings quote for a model that does not beat the baseline
                "bound": str(group["bound"].iloc[0]),
                "train_bpd": float(group["train_bpd"].mean()),
                "val_bpd": float(group["val_bpd"].mean()),
                "single_draw_bpd": float(group["test_elbo_bpd"].astype(float).mean()),
            }
        )
    return pd.DataFrame(rows)


def converged_mark(group: pd.DataFrame) -> str:
    """Whether early stopping ended the runs of one (dataset, model): ``"yes"`` for all of them, else which
    seeds the step ceiling stopped, e.g. ``"1 of 2 (seed 1 at the 3,000-step ceiling)"`` or ``"no (…)"``."""
    stopped = group[~group["converged"].astype(bool)]
    if stopped.empty:
        return "yes"
    which = ", ".join(f"seed {r.seed} at the {int(r.steps):,}-step ceiling" for r in stopped.itertuples(index=False))
    done = len(group) - len(stopped)
    return f"{'no' if done == 0 else f'{done} of {len(group)}'} ({which})"


def likelihood_table(runs: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Test bits/dim per dataset × model: mean ± sd over seeds, with the quantity named, the
    margin over the dataset's reference baseline and whether the model beats it, and whether its
    runs converged (:func:`converged_mark`); then the dataset's baselines as rows marked
    "(baseline)", the reference one marked as such."""
    margins = baseline_margins(runs, baselines).set_index(["dataset", "model"])
    rows = []
    for dataset, runs_of in runs.groupby("dataset", sort=True):
        for model, group in runs_of.groupby("model", sort=True):
            margin = margins.loc[(dataset, model)]
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "likelihood": "exact" if group["exact"].all() else "bound",
                    "test quantity": ", ".join(sorted(group["bound"].unique())),
                    "test bits/dim": _mean_sd(group["test_bpd"]),
                    "test single-draw bound bits/dim": _mean_sd(group["test_elbo_bpd"].astype(float)),
                    "margin vs baseline (bits/dim)": f"{margin['margin']:+.3f}",
                    "beats baseline": "yes" if margin["beats"] else "no",
                    "seeds": int(group["seed"].nunique()),
                    "converged": converged_mark(group),
                    "parameters": int(group["parameters"].iloc[0]),
                }
            )
        for baseline in baselines[baselines["dataset"] == dataset].itertuples(index=False):
            rows.append(
                {
                    "dataset": dataset,
                    "model": f"{baseline.label} (baseline)",
                    "likelihood": "exact",
                    "test quantity": baseline.quantity,
                    "test bits/dim": f"{baseline.test_bpd:.3f}",
                    "test single-draw bound bits/dim": "–",
                    "margin vs baseline (bits/dim)": "–",
                    "beats baseline": "reference" if baseline.reference else "–",
                    "seeds": "–",
                    "converged": "–",
                    "parameters": int(baseline.parameters),
                }
            )
    return pd.DataFrame(rows)


def _datasets_phrase(datasets: list[str]) -> str:
    return datasets[0] if len(datasets) == 1 else f"{', '.join(datasets[:-1])} and {datasets[-1]}"


def _main_quantity(by_dataset: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The code most datasets share, and the datasets where the quantity is another (dataset: code)."""
    counts = pd.Series(list(by_dataset.values())).value_counts(sort=False)
    main = counts.idxmax()
    return main, {dataset: code for dataset, code in by_dataset.items() if code != main}


def _exceptions_note(exceptions: dict[str, dict[str, str]]) -> str:
    """``"On toy2d the quantity is *exact* for realnvp, glow and maf."``: where a row's quantity differs."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for model, found in exceptions.items():
        for dataset, code in found.items():
            grouped.setdefault((dataset, code), []).append(model)
    return " ".join(
        f"On {dataset} the quantity is *{code}* for {_datasets_phrase(models)}."
        for (dataset, code), models in grouped.items()
    )


def _over_seeds(runs: pd.DataFrame) -> str:
    """``"mean ± sd over 2 seeds"``, ``"one training seed per model"`` or ``"mean ± sd over 1 to 3 seeds …"``."""
    counts = runs.groupby(["dataset", "model"])["seed"].nunique()
    low, high = int(counts.min()), int(counts.max())
    if high == 1:
        return "one training seed per model"
    return (
        f"mean ± sd over {low} seeds"
        if low == high
        else f"mean ± sd over {low} to {high} seeds (the CSV gives each model's; the mean alone for one)"
    )


def likelihood_shown(runs: pd.DataFrame, baselines: pd.DataFrame) -> Shown:
    """The likelihood table as the site shows it: one row per model (in the site's order) and per baseline,
    one column per dataset, each cell "mean ± sd" of the test bits/dim over seeds, bold for the lowest model
    of the dataset, marked :data:`NOT_BEATING` where the model did not beat the dataset's reference
    baseline and :data:`CEILING` where a seed of it stopped at its step ceiling; *quantity* gives each
    row's quantity as a short code (:data:`QUANTITY_CODES`). The legend explains all of it."""
    margins = baseline_margins(runs, baselines).set_index(["dataset", "model"])
    datasets = sorted(set(runs["dataset"]) | set(baselines["dataset"]))
    quantities = list(runs["bound"]) + list(baselines["quantity"])
    codes = short_codes(quantities, QUANTITY_CODES)
    means = runs.groupby(["dataset", "model"])["test_bpd"].mean()
    best = means[np.isfinite(means)].groupby(level="dataset").min()
    marks_used: set[str] = set()
    exceptions: dict[str, dict[str, str]] = {}
    rows = []
    for model in model_order(runs["model"]):
        of = runs[runs["model"] == model]
        row: dict[str, str] = {"model": model}
        by_dataset = {
            d: codes[", ".join(sorted(g["bound"].unique()))]
            if g["bound"].nunique() == 1
            else ", ".join(codes[b] for b in sorted(g["bound"].unique()))
            for d, g in of.groupby("dataset", sort=True)
        }
        row["quantity"], exceptions[model] = _main_quantity(by_dataset)
        for dataset in datasets:
            group = of[of["dataset"] == dataset]
            if group.empty:
                row[dataset] = DASH
                continue
            cell = mean_sd_of(group["test_bpd"])
            if dataset in best.index and np.isclose(group["test_bpd"].mean(), best[dataset]):
                cell = f"**{cell}**"
            marks = ("" if margins.loc[(dataset, model), "beats"] else NOT_BEATING) + (
                "" if group["converged"].astype(bool).all() else CEILING
            )
            marks_used.update(marks)
            row[dataset] = cell + (f"^{marks}^" if marks else "")
        rows.append(row)
    for _, of in baselines.groupby("baseline", sort=False):
        row = {"model": f"{of['label'].iloc[0]} (baseline)"}
        row["quantity"], exceptions[row["model"]] = _main_quantity(
            {r.dataset: codes[r.quantity] for r in of.itertuples(index=False)}
        )
        for dataset in datasets:
            found = of[of["dataset"] == dataset]
            row[dataset] = sig(float(found["test_bpd"].iloc[0])) if len(found) else DASH
        rows.append(row)
    references = baselines[baselines["reference"]]
    by_label = references.groupby("label", sort=False)["dataset"].apply(lambda d: _datasets_phrase(sorted(d)))
    notes = [
        f"Test bits/dim, {_over_seeds(runs)}; lower is better; "
        "**bold**: the lowest of the models on that dataset; –: not trained or not defined there."
    ]
    if NOT_BEATING in marks_used:
        notes.append(
            f"^{NOT_BEATING}^ did not beat the dataset's reference baseline ("
            + "; ".join(f"{label} on {where}" for label, where in by_label.items())
            + ")."
        )
    if CEILING in marks_used:
        notes.append(f"^{CEILING}^ a seed stopped at its step ceiling while still improving: provisional.")
    legend = code_legend({label: code for label, code in codes.items() if label in set(quantities)})
    if legend:
        notes.append("Quantities: " + legend)
    if _exceptions_note(exceptions):
        notes.append(_exceptions_note(exceptions))
    return Shown(pd.DataFrame(rows, columns=["model", "quantity", *datasets]), notes)


# Why a model may not beat its dataset's reference baseline, in the order the page gives them;
# each applies to the (model, dataset) pairs that :func:`_causes` finds.
WHY_NOT = {
    "dequantised": (
        "A flow on images is trained and scored on uniformly dequantised data x + u, so its bits/dim are those of "
        "a density of dequantised data: log P(x) ≥ E_u[log p(x + u)], the density bounds the flow's discrete "
        "log-likelihood from below, and its bits/dim exceed its discrete cost by a gap (the dequantisation gap) "
        "that the baselines, exact discrete likelihoods, never pay; Flow++ learns its dequantisation noise "
        "q(u | x) to narrow that gap"
    ),
    "bound": (
        "A bound model (the VAEs, and Flow++ on images) reports an importance-weighted lower bound on log P(x), "
        "not log P(x) itself, so its bits/dim lie above its own exact value by whatever gap the bound leaves"
    ),
    "distilled": (
        "A student trained by density distillation minimises the reverse KL divergence to its teacher on its own "
        "samples; nothing in that objective asks it to give the test data any density"
    ),
    "continuous": (
        "On real-valued data the flows and the Gaussian are both exact densities, with no accounting gap between "
        "them: a flow above the fitted Gaussian has not yet captured more than the data's mean and covariance"
    ),
    "ceiling": (
        "A run stopped by its step ceiling rather than by early stopping was still improving when training "
        "stopped, so the study's training budget, not only the model family, limits it"
    ),
}


def _causes(row: pd.Series) -> list[str]:
    causes = []
    if row["discrete"] and row["exact"]:
        causes.append("dequantised")
    if not row["exact"]:
        causes.append("bound")
    if row["distilled"]:
        causes.append("distilled")
    if not row["discrete"] and row["exact"]:
        causes.append("continuous")
    if row["ceiling"]:
        causes.append("ceiling")
    return causes


# validation bits/dim within this of training's: the model fits held-out data as well as its own, so it
# underfits (its capacity or training, not overfitting, limits it)
UNDERFIT_GAP = 0.05


def _evidence(row: Any, margins: pd.DataFrame) -> str:
    """What this build measured about one model that did not beat its dataset's baseline: its training and
    validation bits/dim (underfitting or overfitting), how much its importance-weighted bound recovers of its
    single-draw one, and which models of the same dataset, scored the same way, do beat the baseline."""
    gap = row.val_bpd - row.train_bpd
    fit = (
        f"it underfits (validation within {gap:+.3f} of training)"
        if gap < UNDERFIT_GAP
        else f"it overfits (validation {gap:+.3f} above training)"
    )
    said = (
        f"{row.model} on {row.dataset}: training {row.train_bpd:.3f} and validation {row.val_bpd:.3f} bits/dim, {fit}"
    )
    if row.bound != "exact" and not math.isnan(row.single_draw_bpd):
        said += f"; its {row.bound} lies {row.single_draw_bpd - row.test_bpd:.3f} below its single-draw bound"
    alike = margins[
        (margins["dataset"] == row.dataset)
        & margins["beats"]
        & (margins["exact"] == row.exact)
        & (margins["model"] != row.model)
    ]
    if len(alike):
        said += (
            f"; {', '.join(alike['model'])}, scored the same way at the same budget, "
            f"{'beats' if len(alike) == 1 else 'beat'} the baseline, so that accounting alone does not explain it"
        )
    return said


def _pairs(frame: pd.DataFrame) -> str:
    """``"glow, maf on mnist; vae on toy2d"``: the models of ``frame``, by dataset."""
    return "; ".join(
        f"{', '.join(group['model'])} on {dataset}" for dataset, group in frame.groupby("dataset", sort=True)
    )


def baseline_findings(margins: pd.DataFrame) -> dict[str, str]:
    """In words: which models do not beat their dataset's reference baseline (``summary``), and
    why, one reason per cause that applies to one of them (``explanation``)."""
    losing = margins[~margins["beats"]]
    if losing.empty:
        closest = margins.loc[margins["margin"].idxmax()]
        return {
            "summary": (
                f"Every model beat the reference baseline of its dataset ({len(margins)} model-dataset pairs); "
                f"the closest was {closest['model']} on {closest['dataset']}, at {closest['margin']:+.3f} "
                f"bits/dim against {closest['baseline']}."
            ),
            "explanation": (
                "Each has learned dependencies between pixels (on the 2-D data: more than a mean and a "
                "covariance), which the baselines lack by construction."
            ),
        }
    listed = "; ".join(
        f"on {dataset}, {len(group)} of {int((margins['dataset'] == dataset).sum())} "
        f"({', '.join(f'{row.model} {row.margin:+.3f}' for row in group.itertuples(index=False))} bits/dim "
        f"against {group['baseline'].iloc[0]})"
        for dataset, group in losing.groupby("dataset", sort=True)
    )
    causes = losing.apply(_causes, axis=1)
    reasons = []
    for key, text in WHY_NOT.items():
        applies = causes.map(lambda found, key=key: key in found)
        if applies.any():
            reasons.append(f"{text} (here: {_pairs(losing[applies])}).")
    measured = "; ".join(_evidence(row, margins) for row in losing.itertuples(index=False))
    return {
        "summary": (
            f"{len(losing)} of {len(margins)} model-dataset pairs did not beat the reference baseline of "
            f"their dataset: {listed}."
        ),
        "explanation": " ".join(reasons) + f" Measured in this build: {measured}.",
    }


def baseline_variables(margins: pd.DataFrame, baselines: pd.DataFrame) -> dict[str, Any]:
    """Numbers and sentences the prose quotes about the baselines, under ``baselines``: each
    baseline's bits/dim per split and parameters by dataset, each model's margin over the
    reference, the counts, and :func:`baseline_findings`."""
    out: dict[str, Any] = {
        "models_compared": int(len(margins)),
        "models_not_beating": int((~margins["beats"]).sum()),
        **baseline_findings(margins),
    }
    for row in baselines[baselines["dataset"].isin(set(margins["dataset"]))].itertuples(index=False):
        entry = out.setdefault(row.dataset, {})
        entry[row.baseline] = {
            "train_bpd": f"{row.train_bpd:.3f}",
            "val_bpd": f"{row.val_bpd:.3f}",
            "test_bpd": f"{row.test_bpd:.3f}",
            "parameters": int(row.parameters),
            "quantity": row.quantity,
        }
        if row.reference:
            entry["reference"] = row.label
    for dataset, group in margins.groupby("dataset", sort=True):
        losing = group[~group["beats"]]
        out[dataset]["not_beating"] = ", ".join(losing["model"]) if len(losing) else "none"
        out[dataset]["margins"] = {
            row.model: {"margin_bpd": f"{row.margin:+.3f}", "beats": bool(row.beats)}
            for row in group.itertuples(index=False)
        }
    return {"baselines": out}


def _steps(values: pd.Series) -> str:
    """The steps the seeds ran: ``"1,500"``, or ``"1,250–3,000"`` when early stopping ended them apart."""
    low, high = int(values.min()), int(values.max())
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def models_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model and dataset: size, cost and test bits/dim (means over seeds), how it was trained, the
    steps its seeds ran against their ceiling and whether they converged (:func:`converged_mark`)."""
    rows = []
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "parameters": int(group["parameters"].iloc[0]),
                "trained by": ", ".join(sorted(group["trained_by"].unique())),
                "steps": _steps(group["steps"]),
                "step ceiling": f"{int(group['ceiling'].max()):,}",
                "converged": converged_mark(group),
                "test bits/dim": _mean_sd(group["test_bpd"]),
                "test quantity": ", ".join(sorted(group["bound"].unique())),
                "samples/s": f"{group['samples_per_s'].mean():.3g}",
                "density evals/s": f"{group['density_evals_per_s'].mean():.3g}",
                "non-finite samples": int(group["nonfinite_samples"].sum()),
            }
        )
    return pd.DataFrame(rows).sort_values(["model", "dataset"]).reset_index(drop=True)


def _in_model_order(table: pd.DataFrame, keys: tuple[str, ...] = ("dataset",)) -> pd.DataFrame:
    """``table`` sorted by ``keys`` and then by model in the site's order (:func:`model_order`)."""
    rank = {m: i for i, m in enumerate(model_order(table["model"]))}
    return (
        table.assign(_rank=table["model"].map(rank))
        .sort_values([*keys, "_rank"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def iwae_shown(table: pd.DataFrame, examples: dict[str, int]) -> Shown:
    """The IWAE-k table as the site shows it: one line per "mean ± sd", a dash for a k beyond a model's
    largest, short headers; the legend says on how many test examples."""
    column = "reference baseline (same examples)"
    named = table[column].str.extract(r"^(?P<value>\S+) \((?P<label>.+)\)$")  # "2.401 (independent pixels)"
    table = table.assign(**{column: named["value"].fillna(table[column])})
    shown = readable(_in_model_order(table)).rename(
        columns={"best exact flow (same examples)": "best exact flow", column: "reference baseline"}
    )
    labels = named.assign(dataset=table["dataset"]).dropna().drop_duplicates("dataset")
    by_label = labels.groupby("label", sort=False)["dataset"].apply(lambda d: _datasets_phrase(sorted(d)))
    counts = sorted(set(examples.values()))
    where = (
        f"the first {counts[0]} test examples of each dataset"
        if len(counts) == 1
        else "the first test examples of each dataset ("
        + ", ".join(f"{n} on {d}" for d, n in sorted(examples.items()))
        + ")"
    )
    notes = [
        f"Bits/dim, mean ± sd over seeds, on {where}, the ones the likelihood probe scored; k = 1 is the "
        "single-draw bound (the ELBO for the VAEs); –: a k beyond that model's largest.",
        "*best exact flow* and *reference baseline*: their bits/dim on the same examples; the baseline is "
        + "; ".join(f"{label} on {where}" for label, where in by_label.items())
        + ".",
    ]
    return Shown(shown, notes)


def gaps_shown(table: pd.DataFrame) -> Shown:
    """The train/val/test table as the site shows it: 3 significant figures, "mean ± sd" on one line."""
    return Shown(
        readable(_in_model_order(table)),
        [
            "Bits/dim, mean ± sd over seeds (the mean alone for one seed). *exact*: the exact density (of uniformly "
            "dequantised data on images); *single-draw bound*: the one-sample bound the model was trained and "
            "validated with (the ELBO for the VAEs)."
        ],
    )


def per_class_shown(table: pd.DataFrame) -> Shown:
    """The per-class table as the site shows it: 3 significant figures, models in the site's order."""
    return Shown(
        readable(_in_model_order(table)),
        [
            "Test bits/dim per class, mean over seeds, of each model's headline quantity; *easiest* and *hardest*: "
            "the classes with the lowest and the highest."
        ],
    )


#: short codes of how a model was trained, in the models table
TRAINING_CODES = {"maximum likelihood": "ML", "its variational-dequantisation bound": "VD bound", "its ELBO": "ELBO"}


def models_shown(table: pd.DataFrame) -> Shown:
    """The models table as the site shows it: how each was trained and its quantity as short codes (spelled
    out in the legend), *converged* as yes / no / "k of n" (the CSV names the seeds), numbers to 3
    significant figures."""
    table = _in_model_order(table.sort_values("dataset", kind="stable"), ())
    trained = short_codes(
        table["trained by"],
        {
            **TRAINING_CODES,
            **{
                t: "distilled (" + t.rsplit(" ", 1)[-1] + ")"
                for t in table["trained by"]
                if t.startswith("density distillation from ")
            },
        },
    )
    quantity = short_codes(table["test quantity"], QUANTITY_CODES)
    shown = readable(
        table.assign(
            **{
                "trained by": table["trained by"].map(trained),
                "test quantity": table["test quantity"].map(quantity),
                "converged": table["converged"].map(lambda c: c.split(" (")[0]),
            }
        ).drop(columns=["step ceiling"])
    ).rename(columns={"non-finite samples": "non-finite", "steps": "steps / ceiling"})
    shown["steps / ceiling"] = [f"{steps} / {ceiling}" for steps, ceiling in zip(table["steps"], table["step ceiling"])]
    notes = [
        "Means over seeds; *steps / ceiling*: the steps the seeds ran (a range where early stopping ended them "
        "apart) and their step ceiling; *converged*: whether early stopping ended every seed (*k of n*: that many "
        "of them; the CSV names the others); throughput in samples and density evaluations per second on this "
        "machine."
    ]
    if (table["non-finite samples"] == 0).all():
        shown = shown.drop(columns="non-finite")
        notes.append("No sample was non-finite.")
    else:
        notes.append("*non-finite*: samples with a non-finite value.")
    legend = code_legend({**trained, **quantity})
    if legend:
        notes.append("Codes: " + legend)
    return Shown(shown, notes)


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Learning curves (the curves.csv beside each run's metrics) in long form: one row per (run, step, split)."""
    frames = []
    for dataset, model, seed, path in runs[["dataset", "model", "seed", "curves"]].itertuples(index=False):
        df = pd.read_csv(path)
        df = df.melt(
            id_vars=["step"],
            value_vars=["train_bits_per_dim", "val_bits_per_dim"],
            var_name="split",
            value_name="bits_per_dim",
        )
        df["split"] = df["split"].str.replace("_bits_per_dim", "", regex=False)
        frames.append(df.assign(dataset=dataset, model=model, seed=seed))
    return pd.concat(frames, ignore_index=True)


PANEL_WIDTH = 230
PANEL_HEIGHT = 170


def _baseline_layers(lines: pd.DataFrame, axis: str = "y", title: str = "bits/dim") -> list[alt.Chart]:
    """Grey dotted rules at ``lines["bits_per_dim"]`` (horizontal for ``axis="y"``, vertical for ``"x"``), each
    labelled with ``lines["label"]`` at the panel's edge; none when ``lines`` is empty. ``title``: the axis
    title of the panel they are drawn on (a layer's axis joins the titles of its layers)."""
    if lines.empty:
        return []
    data = lines[["label", "bits_per_dim"]].reset_index(drop=True)
    position = alt.X("bits_per_dim:Q", title=title) if axis == "x" else alt.Y("bits_per_dim:Q", title=title)
    tooltip = [alt.Tooltip("label:N", title="baseline"), alt.Tooltip("bits_per_dim:Q", format=".3f")]
    rules = (
        alt.Chart(data).mark_rule(color=BASELINE_COLOUR, strokeDash=[2, 2]).encode(**{axis: position}, tooltip=tooltip)
    )
    if axis == "x":
        labels = (
            alt.Chart(data)
            .mark_text(align="center", baseline="bottom", dy=-3, fontSize=9, color=BASELINE_COLOUR)
            .encode(x=position, y=alt.value(0), text="label:N")
        )
    else:
        labels = (
            alt.Chart(data)
            .mark_text(align="right", baseline="bottom", dx=-2, dy=-1, fontSize=9, color=BASELINE_COLOUR)
            .encode(x=alt.value(PANEL_WIDTH), y=position, text="label:N")
        )
    return [rules, labels]


def _panel_title(dataset: str, note: str, offset: int = 4) -> alt.Title:
    """A panel's title (its dataset) and, in red under it, what lies off its scale."""
    return alt.Title(
        dataset,
        subtitle=[note] if note else alt.Undefined,
        subtitleColor="#b00020",
        subtitleFontSize=10,
        anchor="start",
        offset=offset,
    )


def learning_curve_scale(curves: pd.DataFrame, baselines: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per dataset, the learning curves' y axis: ``floor`` and ``ceiling`` (:func:`typical_range` of every
    run's best validation bits/dim against the dataset's baselines at their validation bits/dim), ``domain``
    (the points from the floor up to the highest baseline or on-scale best, so that the first evaluations
    of a run leave the panel at the top), ``off_scale``, the runs whose best validation bits/dim lies
    above the ceiling, and ``below``, those with a point below the floor (a training loss that is no
    likelihood, as a distilled student's), each as ``("model seed N", value)`` pairs."""
    out = {}
    for dataset, d in curves.groupby("dataset", sort=True):
        refs = baselines.loc[baselines["dataset"] == dataset, "val_bpd"].tolist()
        val = d[d["split"] == "val"]
        best = (val if len(val) else d).groupby(["model", "seed"])["bits_per_dim"].min()
        floor, ceiling = typical_range(best.tolist(), refs)
        lowest = d.groupby(["model", "seed"])["bits_per_dim"].min()
        # the top: where the runs ended up and the baselines, so an early transient leaves the panel at the top
        top = max([v for v in best.tolist() + refs if np.isfinite(v) and v <= ceiling], default=ceiling)
        out[dataset] = {
            "floor": floor,
            "ceiling": ceiling,
            "off_scale": [(f"{model} seed {seed}", float(v)) for (model, seed), v in best.items() if v > ceiling],
            "below": [(f"{model} seed {seed}", float(v)) for (model, seed), v in lowest.items() if v < floor],
            "domain": padded_domain(d["bits_per_dim"].tolist() + refs, top, pad=0.03, floor=floor),
        }
    return out


def learning_curves_chart(curves: pd.DataFrame, baselines: pd.DataFrame) -> alt.ConcatChart:
    """Bits/dim against training step, one panel per dataset, one colour per model (the site's scale), solid
    for training and dashed for validation; each of the dataset's baselines at its validation bits/dim as a
    labelled grey rule. Each panel's y axis covers where the runs ended up and the baselines
    (:func:`learning_curve_scale`): early evaluations leave it at the top, and a run whose best lies off
    the scale is named in the panel's subtitle."""
    scale = learning_curve_scale(curves, baselines)
    colour = model_color(curves["model"])
    panels = []
    for dataset, d in curves.groupby("dataset", sort=True):
        s = scale[dataset]
        shown = baselines[baselines["dataset"] == dataset]
        lines = pd.DataFrame({"label": shown["label"] + " (baseline)", "bits_per_dim": shown["val_bpd"]})
        y = alt.Y("bits_per_dim:Q", title="bits/dim", scale=alt.Scale(domain=s["domain"], zero=False, nice=False))
        runs = (
            alt.Chart(d)
            .mark_line(point=False, opacity=0.85, clip=True)
            .encode(
                x=alt.X("step:Q", title="training step"),
                y=y,
                color=colour,
                strokeDash=alt.StrokeDash(
                    "split:N", title="split", scale=alt.Scale(domain=["train", "val"], range=[[1, 0], [5, 3]])
                ),
                detail="seed:N",
                tooltip=["dataset", "model", "seed", "split", "step", alt.Tooltip("bits_per_dim:Q", format=".3f")],
            )
        )
        note = off_scale_note(s["off_scale"], s["ceiling"], below=s["below"], floor=s["floor"])
        panels.append(
            alt.layer(runs, *_baseline_layers(lines))
            .resolve_scale(y="shared")
            .properties(width=PANEL_WIDTH, height=PANEL_HEIGHT, title=_panel_title(dataset, note))
        )
    off = [f"{name} on {dataset}" for dataset, s in scale.items() for name, _ in s["off_scale"] + s["below"]]
    description = (
        f"Line charts of training (solid) and validation (dashed) bits/dim against training step for every run, "
        f"one panel per dataset ({_datasets_phrase(sorted(scale))}), one colour per model; grey dotted lines mark "
        f"the dataset's baselines at their validation bits/dim. Each vertical axis covers the typical runs"
        + (f"; off the scale: {', '.join(off)}." if off else "; no run is off the scale.")
    )
    return alt.concat(*panels, columns=2).properties(description=description)


AXIS_TITLE = "test bits/dim (lower is better)"


def overview_datasets(runs: pd.DataFrame, baselines: pd.DataFrame) -> list[str]:
    """The image datasets (discrete levels: a uniform and an independent-pixel baseline) the study trained
    on, or every dataset when it has none."""
    discrete = set(baselines.loc[baselines["discrete"].astype(bool), "dataset"]) & set(runs["dataset"])
    return sorted(discrete) if discrete else sorted(runs["dataset"].unique())


def overview_frame(runs: pd.DataFrame, baselines: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """What the headline figure draws on the image datasets: per run (``seeds``: test bits/dim, ``shown`` the
    value clipped to its panel, ``off`` whether it is off scale) and per model (``models``: mean over seeds,
    the range of the seeds as drawn, the likelihood kind), and per dataset its ``ceiling`` and ``domain``."""
    datasets = overview_datasets(runs, baselines)
    seeds, models, scale = [], [], {}
    for dataset in datasets:
        r = runs[runs["dataset"] == dataset]
        refs = baselines.loc[baselines["dataset"] == dataset, "test_bpd"].tolist()
        ceiling = typical_ceiling(r["test_bpd"].tolist(), refs)  # every seed: one degenerate seed moves no median
        domain = padded_domain(r["test_bpd"].tolist() + refs, ceiling)
        edge = domain[1]
        if not (r["test_bpd"] <= ceiling).all():  # room at the right edge for the off-scale marks
            width = domain[1] - domain[0]
            edge, domain = domain[1] + 0.05 * width, [domain[0], domain[1] + 0.1 * width]
        scale[dataset] = {"ceiling": ceiling, "domain": domain}
        for run in r.itertuples(index=False):
            off = not (run.test_bpd <= ceiling)
            seeds.append(
                {
                    "dataset": dataset,
                    "model": run.model,
                    "seed": int(run.seed),
                    "test_bpd": float(run.test_bpd),
                    "shown": edge if off else float(run.test_bpd),
                    "off": off,
                    "label": sig(run.test_bpd) if off else "",
                    "quantity": run.bound,
                }
            )
        for model, g in r.groupby("model"):
            mean = float(g["test_bpd"].mean())
            clipped = g["test_bpd"].clip(upper=edge)
            models.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "test_bpd": mean,
                    "sd": float(g["test_bpd"].std(ddof=1)) if len(g) > 1 else math.nan,
                    "seeds": int(len(g)),
                    "low": float(clipped.min()),
                    "high": float(clipped.max()),
                    "off": not (mean <= ceiling),
                    "shown": edge if not (mean <= ceiling) else mean,
                    "likelihood": "exact" if g["exact"].all() else "bound",
                    "quantity": ", ".join(sorted(g["bound"].unique())),
                }
            )
    return pd.DataFrame(seeds), pd.DataFrame(models), scale


def overview_chart(runs: pd.DataFrame, baselines: pd.DataFrame) -> alt.ConcatChart:
    """The headline figure: test bits/dim of every model on each image dataset against its baselines. One
    panel per dataset, one row per model (the site's order and colours): a small open circle per seed, a
    line across the seeds, the mean over seeds as a large mark (circle: exact likelihood, diamond: bound);
    grey dotted vertical rules at the dataset's baselines, labelled. Each x axis reaches only the typical
    models (:func:`typical_ceiling`): an off-scale seed or mean is drawn as a triangle at the right edge
    with its value, and named in the panel's subtitle."""
    seeds, models, scale = overview_frame(runs, baselines)
    order = model_order(models["model"])
    colour = model_color(order, legend=None)
    panels = []
    for i, dataset in enumerate(sorted(scale)):
        s, d, m = scale[dataset], seeds[seeds["dataset"] == dataset], models[models["dataset"] == dataset]
        x = alt.X("shown:Q", title=AXIS_TITLE, scale=alt.Scale(domain=s["domain"], zero=False, nice=False))
        y = alt.Y(
            "model:N",
            sort=order,
            scale=alt.Scale(domain=order),
            title=None,
            axis=alt.Axis(labelFontSize=11) if i == 0 else alt.Axis(labels=False, ticks=False, title=None),
        )
        tooltip = ["dataset", "model", alt.Tooltip("test_bpd:Q", title="test bits/dim", format=".4g"), "quantity"]
        spread = (
            alt.Chart(m)
            .mark_rule(strokeWidth=2, opacity=0.6)
            .encode(
                x=alt.X("low:Q", title=AXIS_TITLE, scale=alt.Scale(domain=s["domain"], zero=False, nice=False)),
                x2="high:Q",
                y=y,
                color=colour,
            )
        )
        dots = (
            alt.Chart(d)
            .mark_point(size=28, filled=False, opacity=0.8, clip=True)
            .encode(x=x, y=y, color=colour, tooltip=tooltip + ["seed"])
        )
        mean = (
            alt.Chart(m[~m["off"]])
            .mark_point(size=110, filled=True, opacity=0.95)
            .encode(
                x=x,
                y=y,
                color=colour,
                shape=alt.Shape(
                    "likelihood:N",
                    title="mean over seeds",
                    scale=alt.Scale(domain=["exact", "bound"], range=["circle", "diamond"]),
                ),
                tooltip=tooltip + [alt.Tooltip("sd:Q", title="sd over seeds", format=".3g"), "seeds"],
            )
        )
        layers = [spread, dots, mean]
        off_runs = d[d["off"]]
        if len(off_runs):
            layers.append(
                alt.Chart(off_runs)
                .mark_point(shape="triangle-right", size=90, filled=True)
                .encode(x=x, y=y, color=colour, tooltip=tooltip + ["seed"])
            )
            layers.append(
                alt.Chart(off_runs.drop_duplicates("model"))
                .mark_text(align="right", baseline="bottom", dx=-6, dy=-4, fontSize=9)
                .encode(x=x, y=y, text="label:N")
            )
        lines = baselines[baselines["dataset"] == dataset]
        layers += _baseline_layers(
            pd.DataFrame({"label": lines["label"], "bits_per_dim": lines["test_bpd"]}), axis="x", title=AXIS_TITLE
        )
        named = [(f"{r.model} seed {r.seed}", r.test_bpd) for r in off_runs.itertuples(index=False)]
        note = off_scale_note(named, s["ceiling"]) or (" " if len(seeds[seeds["off"]]) else "")  # titles aligned
        panels.append(
            alt.layer(*layers).properties(
                width=210, height=24 * len(order), title=_panel_title(dataset, note, offset=16)
            )
        )
    best = models.loc[models.groupby("dataset")["test_bpd"].idxmin()] if len(models) else models
    said = "; ".join(f"{r.dataset}: {r.model} at {sig(r.test_bpd)}" for r in best.itertuples(index=False))
    lines = baselines[baselines["dataset"].isin(list(scale))]
    off = (
        [f"{r.model} seed {r.seed} on {r.dataset}" for r in seeds[seeds["off"]].itertuples(index=False)]
        if len(seeds)
        else []
    )
    description = (
        f"Dot plot of test bits/dim (lower is better) of every model, one panel per image dataset "
        f"({_datasets_phrase(sorted(scale))}), one row and colour per model: a small open circle per training seed, "
        "a line across the seeds and a large mark for the mean over seeds (circle: exact likelihood, diamond: "
        f"bound); grey dotted vertical lines mark the baselines ({', '.join(dict.fromkeys(lines['label']))}). "
        f"Lowest mean per dataset: {said}."
        + (f" Off the scale, drawn as triangles at the right edge: {', '.join(off)}." if off else "")
    )
    return (
        alt.concat(*panels, columns=len(panels), spacing=12)
        .resolve_scale(y="shared", color="shared")
        .properties(description=description)
        .configure_legend(orient="bottom", direction="horizontal")
    )


def variables(runs: pd.DataFrame) -> dict[str, Any]:
    """Numbers the prose quotes, as formatted strings keyed by dataset and model, and under ``convergence``
    how many runs early stopping ended and which the step ceiling did (:func:`convergence_variables`)."""
    out: dict[str, Any] = {"runs": int(len(runs)), "seeds": int(runs["seed"].nunique()), **convergence_variables(runs)}
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        out.setdefault(dataset, {})[model] = {
            "test_bpd": _mean_sd(group["test_bpd"]),
            "bound": ", ".join(sorted(group["bound"].unique())),
        }
    return out


def convergence_variables(runs: pd.DataFrame) -> dict[str, Any]:
    """Under ``convergence``: ``converged`` (runs early stopping ended: validation stopped improving),
    ``not_converged`` (runs their step ceiling ended, still improving) and ``summary``, a sentence that names
    every run that did not converge (model, dataset, seed, steps) or says that all converged."""
    converged = runs["converged"].astype(bool)
    stopped = runs[~converged]
    if stopped.empty:
        summary = (
            f"All {len(runs)} runs converged: each was stopped by early stopping, when its validation "
            "bits/dim stopped improving, before its step ceiling."
        )
    else:
        named = "; ".join(
            f"{r.model} on {r.dataset}, seed {r.seed}, after {int(r.steps):,} steps"
            for r in stopped.itertuples(index=False)
        )
        summary = (
            f"{len(stopped)} of {len(runs)} runs did not converge, stopped by the step ceiling while their "
            f"validation bits/dim was still improving: {named}. Every comparison that involves "
            f"{'it' if len(stopped) == 1 else 'them'} is provisional."
            + (f" The other {int(converged.sum())} were stopped by early stopping." if converged.any() else "")
        )
    return {"convergence": {"converged": int(converged.sum()), "not_converged": len(stopped), "summary": summary}}


def _bpd(nats: np.ndarray | float, num_dims: int) -> np.ndarray | float:
    return -np.asarray(nats) / (num_dims * math.log(2))


def gaps_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Train / val / test bits/dim of the same quantity (``log_prob``: exact, or the single-draw
    bound) and the generalisation gap test − train, mean ± sd over seeds."""
    runs = runs.assign(test_single=runs["test_elbo_bpd"].astype(float).fillna(runs["test_bpd"]))
    runs = runs.assign(gap=runs["test_single"] - runs["train_bpd"])
    rows = []
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "quantity": "exact" if group["exact"].all() else "single-draw bound",
                "train bits/dim": _mean_sd(group["train_bpd"]),
                "val bits/dim": _mean_sd(group["val_bpd"]),
                "test bits/dim": _mean_sd(group["test_single"]),
                "gap test − train": _mean_sd(group["gap"]),
            }
        )
    return pd.DataFrame(rows)


def probe_examples(probes: list[ProbeResult]) -> dict[str, int]:
    """Per dataset, how many of its first test examples every likelihood probe scored."""
    examples: dict[str, int] = {}
    for p in probes:
        n = p.arrays["iwae_nats"].shape[1]
        examples[p.dataset] = min(examples.get(p.dataset, n), n)
    return examples


def iwae_curves(probes: list[ProbeResult], runs: pd.DataFrame) -> pd.DataFrame:
    """Long form: bits/dim of IWAE-k per (dataset, model, seed, k), on the probe's test examples,
    plus one row per exact model and seed (``k`` = NaN) scored on the same examples."""
    dims = runs.groupby("dataset")["num_dims"].first().to_dict()
    rows = []
    examples = probe_examples(probes)
    for p in probes:
        for k, values in zip(p.arrays["k"], p.arrays["iwae_nats"]):
            rows.append(
                {
                    "dataset": p.dataset,
                    "model": p.model,
                    "seed": p.seed,
                    "k": int(k),
                    "bits_per_dim": float(_bpd(values.mean(), dims[p.dataset])),
                    "exact": False,
                }
            )
    for run in runs[runs["exact"] & runs["dataset"].isin(list(examples))].itertuples(index=False):
        with np.load(run.scores) as scores:
            values = scores["log_likelihood"][: examples[run.dataset]]
        rows.append(
            {
                "dataset": run.dataset,
                "model": run.model,
                "seed": run.seed,
                "k": float("nan"),
                "bits_per_dim": float(_bpd(values.mean(), run.num_dims)),
                "exact": True,
            }
        )
    return pd.DataFrame(rows)


def baselines_on_examples(baselines: pd.DataFrame, probes: list[ProbeResult]) -> pd.DataFrame:
    """Each probed dataset's reference baseline scored on the probe's test examples (the first
    ones of the test split, as :func:`iwae_curves`): dataset, label, bits_per_dim."""
    rows = []
    for dataset, n in probe_examples(probes).items():
        for row in baselines[(baselines["dataset"] == dataset) & baselines["reference"]].itertuples(index=False):
            with np.load(row.scores) as scores:
                values = scores[row.baseline][:n]
            rows.append(
                {"dataset": dataset, "label": row.label, "bits_per_dim": float(_bpd(values.mean(), row.num_dims))}
            )
    return pd.DataFrame(rows, columns=["dataset", "label", "bits_per_dim"])


def iwae_table(curves: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Bits/dim per (dataset, model) at each k (mean ± sd over seeds); exact models in one column;
    the dataset's reference baseline on the same examples in another."""
    bound = curves[~curves["exact"]]
    table = bound.groupby(["dataset", "model", "k"])["bits_per_dim"].apply(_mean_sd).unstack("k")
    table.columns = [f"k={int(k)}" for k in table.columns]
    table = table.reset_index()
    best_exact = curves[curves["exact"]].groupby(["dataset", "model"])["bits_per_dim"].mean().groupby("dataset")
    table["best exact flow (same examples)"] = table["dataset"].map(
        {d: f"{g.min():.3f} ({g.idxmin()[1]})" for d, g in best_exact}
    )
    table["reference baseline (same examples)"] = table["dataset"].map(
        {row.dataset: f"{row.bits_per_dim:.3f} ({row.label})" for row in references.itertuples(index=False)}
    )
    return table


def iwae_chart(curves: pd.DataFrame, references: pd.DataFrame) -> alt.ConcatChart:
    """IWAE-k bits/dim against k (log scale) for the bound models (means over seeds), with each exact flow's
    value on the same examples as a dashed rule in its colour and the dataset's reference baseline on the
    same examples as a labelled grey rule; one panel per dataset. Each y axis reaches only the typical
    models (:func:`typical_ceiling`); a model above it is named in the panel's subtitle."""
    means = curves.groupby(["dataset", "model", "k", "exact"], dropna=False)["bits_per_dim"].mean().reset_index()
    colour = model_color(means["model"])
    panels, off = [], []
    for dataset, d in means.groupby("dataset", sort=True):
        refs = references[references["dataset"] == dataset]
        per_model = d.groupby("model")["bits_per_dim"].max()
        ceiling = typical_ceiling(d.groupby("model")["bits_per_dim"].mean().tolist(), refs["bits_per_dim"].tolist())
        named = [(model, float(v)) for model, v in per_model.items() if v > ceiling]
        off += [f"{model} on {dataset}" for model, _ in named]
        domain = padded_domain(d["bits_per_dim"].tolist() + refs["bits_per_dim"].tolist(), ceiling)
        y = alt.Y(
            "bits_per_dim:Q", scale=alt.Scale(domain=domain, zero=False, nice=False), title="bits/dim (lower is better)"
        )
        bound, exact = d[~d["exact"].astype(bool)], d[d["exact"].astype(bool)]
        layers = [
            alt.Chart(bound)
            .mark_line(point=True, clip=True)
            .encode(
                x=alt.X("k:Q", scale=alt.Scale(type="log"), title="k (importance samples)"),
                y=y,
                color=colour,
                tooltip=["dataset", "model", "k", alt.Tooltip("bits_per_dim:Q", format=".4f")],
            )
        ]
        if len(exact):
            layers.append(
                alt.Chart(exact.drop(columns="k"))
                .mark_rule(strokeDash=[4, 3], clip=True)
                .encode(y=y, color=colour, tooltip=["dataset", "model", alt.Tooltip("bits_per_dim:Q", format=".4f")])
            )
        lines = refs.assign(label=refs["label"] + " (baseline)")
        panels.append(
            alt.layer(*layers, *_baseline_layers(lines, title="bits/dim (lower is better)")).properties(
                width=PANEL_WIDTH, height=PANEL_HEIGHT, title=_panel_title(dataset, off_scale_note(named, ceiling))
            )
        )
    datasets = sorted(means["dataset"].unique())
    description = (
        "Line charts of the bound models' IWAE-k bits/dim against the number of importance samples k (log scale), "
        f"means over seeds, one panel per dataset ({_datasets_phrase(datasets)}), one colour per model; dashed "
        "horizontal lines are the exact flows' bits/dim on the same test examples, in their colours, and a grey "
        "dotted line the dataset's reference baseline on them" + (f"; off the scale: {', '.join(off)}." if off else ".")
    )
    return alt.concat(*panels, columns=2).properties(description=description)


def per_class(runs: pd.DataFrame) -> pd.DataFrame:
    """Test bits/dim (the headline quantity) per class, per run, on the datasets with labels."""
    rows = []
    for run in runs.itertuples(index=False):
        with np.load(run.scores) as scores:
            if "labels" not in scores.files or run.dataset not in ("digits", "mnist"):
                continue
            frame = pd.DataFrame({"label": scores["labels"], "bpd": _bpd(scores["log_likelihood"], run.num_dims)})
        for label, group in frame.groupby("label"):
            rows.append(
                {
                    "dataset": run.dataset,
                    "model": run.model,
                    "seed": run.seed,
                    "class": int(label),
                    "bits_per_dim": float(group["bpd"].mean()),
                }
            )
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "class", "bits_per_dim"])


def per_class_table(classes: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of per-class test bits/dim: rows (dataset, model), one column per class,
    and the easiest and hardest class of each row."""
    means = classes.groupby(["dataset", "model", "class"])["bits_per_dim"].mean().unstack("class")
    table = means.round(3)
    table.columns = [f"class {c}" for c in table.columns]
    table["easiest"] = means.idxmin(axis=1).astype(int)
    table["hardest"] = means.idxmax(axis=1).astype(int)
    return table.reset_index()


def baseline_per_class(baselines: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Each baseline's test bits/dim per class on the labelled datasets (the classes of the test examples
    from a run's scores of the same dataset; every run and baseline scores the test split in the same
    order): dataset, label, class, bits_per_dim."""
    rows = []
    for dataset, of in runs.groupby("dataset", sort=True):
        if dataset not in ("digits", "mnist"):
            continue
        with np.load(of["scores"].iloc[0]) as scores:
            if "labels" not in scores.files:
                continue
            labels = scores["labels"]
        for row in baselines[baselines["dataset"] == dataset].itertuples(index=False):
            with np.load(row.scores) as scores:
                values = _bpd(scores[row.baseline], row.num_dims)
            if len(values) != len(labels):
                raise ValueError(
                    f"{row.scores}: {len(values)} test scores of {row.baseline}, but the runs of {dataset} "
                    f"scored {len(labels)} test examples; rerun rule baselines for {dataset}"
                )
            frame = pd.DataFrame({"class": labels, "bpd": values})
            for label, group in frame.groupby("class"):
                rows.append(
                    {
                        "dataset": dataset,
                        "label": row.label,
                        "class": int(label),
                        "bits_per_dim": float(group["bpd"].mean()),
                    }
                )
    return pd.DataFrame(rows, columns=["dataset", "label", "class", "bits_per_dim"])


def per_class_chart(classes: pd.DataFrame, baselines: pd.DataFrame | None = None) -> alt.ConcatChart:
    """Test bits/dim per class, one line per model (mean over seeds, the site's colours) and a grey dotted
    line per baseline (:func:`baseline_per_class`), one panel per labelled dataset. Each y axis reaches
    only the typical models (:func:`typical_ceiling`); a model above it is named in the panel's subtitle."""
    means = classes.groupby(["dataset", "model", "class"])["bits_per_dim"].mean().reset_index()
    baselines = (
        baselines if baselines is not None else pd.DataFrame(columns=["dataset", "label", "class", "bits_per_dim"])
    )
    colour = model_color(means["model"])
    panels, off = [], []
    for dataset, d in means.groupby("dataset", sort=True):
        b = baselines[baselines["dataset"] == dataset]
        ceiling = typical_ceiling(d.groupby("model")["bits_per_dim"].mean().tolist(), b["bits_per_dim"].tolist())
        worst = d.groupby("model")["bits_per_dim"].max()
        named = [(model, float(v)) for model, v in worst.items() if v > ceiling]
        off += [f"{model} on {dataset}" for model, _ in named]
        y = alt.Y(
            "bits_per_dim:Q",
            title="test bits/dim",
            scale=alt.Scale(
                domain=padded_domain(d["bits_per_dim"].tolist() + b["bits_per_dim"].tolist(), ceiling),
                zero=False,
                nice=False,
            ),
        )
        x = alt.X("class:O", title="class", axis=alt.Axis(labelAngle=0))
        layers = [
            alt.Chart(d)
            .mark_line(point=True, clip=True)
            .encode(
                x=x,
                y=y,
                color=colour,
                tooltip=["dataset", "model", "class", alt.Tooltip("bits_per_dim:Q", format=".3f")],
            )
        ]
        if len(b):
            lines = b.assign(label=b["label"] + " (baseline)")
            layers.append(
                alt.Chart(lines)
                .mark_line(color=BASELINE_COLOUR, strokeDash=[2, 2], strokeWidth=1, clip=True)
                .encode(
                    x=x,
                    y=y,
                    detail="label:N",
                    tooltip=[
                        "dataset",
                        alt.Tooltip("label:N", title="baseline"),
                        "class",
                        alt.Tooltip("bits_per_dim:Q", format=".3f"),
                    ],
                )
            )
            last = lines[lines["class"] == lines["class"].max()]
            layers.append(
                alt.Chart(last)
                .mark_text(align="right", baseline="bottom", dy=-3, fontSize=9, color=BASELINE_COLOUR)
                .encode(x=x, y=y, text="label:N")
            )
        panels.append(
            alt.layer(*layers).properties(
                width=260, height=PANEL_HEIGHT, title=_panel_title(dataset, off_scale_note(named, ceiling))
            )
        )
    datasets = sorted(means["dataset"].unique())
    description = (
        "Line charts of test bits/dim per class, one line per model (means over seeds), one panel per labelled "
        f"dataset ({_datasets_phrase(datasets) if datasets else 'none'}), one colour per model"
        + ("; grey dotted lines are the dataset's baselines per class" if len(baselines) else "")
        + (f"; off the scale: {', '.join(off)}." if off else ".")
    )
    return alt.concat(*panels, columns=2).properties(description=description)


def curve_variables(curves: pd.DataFrame, classes: pd.DataFrame) -> dict[str, Any]:
    """How much IWAE-k tightens from k = 1 to the largest k, per (dataset, model); the best exact model on
    the same examples and each bound model's distance to it (``vs_best_exact_bpd``: its largest-k bound
    minus the best exact bits/dim, negative when the bound is already lower); per-class spread."""
    out: dict[str, Any] = {}
    bound = curves[~curves["exact"]].groupby(["dataset", "model", "k"])["bits_per_dim"].mean()
    exact = curves[curves["exact"]].groupby(["dataset", "model"])["bits_per_dim"].mean()
    best_exact: dict[str, float] = {}
    for dataset, group in exact.groupby(level="dataset"):
        finite = group[np.isfinite(group)]
        if len(finite) and dataset in bound.index.get_level_values("dataset"):
            best_exact[dataset] = float(finite.min())
            out.setdefault("iwae", {}).setdefault(dataset, {}).update(
                {
                    "best_exact_model": model_label(str(finite.idxmin()[1])),
                    "best_exact_bpd": round(float(finite.min()), 3),
                }
            )
    for (dataset, model), group in bound.groupby(level=["dataset", "model"]):
        ks = group.index.get_level_values("k")
        first, last = group.iloc[0], group.iloc[-1]
        monotone = bool((np.diff(group.to_numpy()) <= 1e-9).all())
        entry = out.setdefault("iwae", {}).setdefault(dataset, {})
        entry[model] = {
            "k_max": int(ks.max()),
            "elbo_bpd": round(float(first), 3),
            "iwae_max_bpd": round(float(last), 3),
            "tightening_bpd": round(float(first - last), 3),
            "non_increasing": monotone,
        }
        if dataset in best_exact:
            entry[model]["vs_best_exact_bpd"] = round(float(last) - best_exact[dataset], 3)
    if not classes.empty:
        spread = classes.groupby(["dataset", "model", "class"])["bits_per_dim"].mean().groupby(["dataset", "model"])
        for (dataset, model), group in spread:
            out.setdefault("per_class", {}).setdefault(dataset, {})[model] = {
                "easiest": int(group.idxmin()[2]),
                "hardest": int(group.idxmax()[2]),
                "spread_bpd": round(float(group.max() - group.min()), 3),
            }
    return out
