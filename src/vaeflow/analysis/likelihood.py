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

from vaeflow.analysis.runs import ProbeResult

TABLES = ("likelihood", "likelihood_comparisons", "models", "likelihood_gaps", "likelihood_iwae",
          "likelihood_per_class")
FIGURES = ("learning_curves", "likelihood_iwae_curve", "likelihood_per_class")


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
            raise FileNotFoundError(f"{summary} does not exist: the likelihood analysis reads each run's step "
                                    "ceiling and parameter budget from the train.json beside its metrics.json; "
                                    "retrain that run")
        run = json.loads(summary.read_text(encoding="utf-8"))["run"]
        missing = [key for key in ("converged", "stopped_by") if key not in m]
        if missing:
            raise ValueError(f"{path} has no {' or '.join(missing)} (it predates early stopping); rerun its evaluation "
                             f"(snakemake {path} --forcerun evaluate)")
        test = m["test"]
        rows.append({
            "dataset": m["dataset"],
            "model": m["model"],
            "seed": m["seed"],
            "exact": m["exact"],
            "bound": test["bound"],
            "test_bpd": test["bits_per_dim"],
            "test_elbo_bpd": test.get("elbo_bits_per_dim"),
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
        })
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
            rows.append({
                "dataset": found["dataset"], "baseline": entry["name"], "label": entry["label"],
                "quantity": entry["quantity"], "parameters": int(entry["parameters"]),
                "reference": bool(entry["reference"]), "discrete": found["levels"] is not None,
                "train_bpd": bpd["train"], "val_bpd": bpd["val"], "test_bpd": bpd["test"],
                "scores": str(path.parent / found["test_scores"]), "num_dims": int(found["num_dims"]),
            })
    baselines = pd.DataFrame(rows)
    if baselines.empty:
        raise ValueError("no baselines given to the likelihood analysis: pass every dataset's "
                         "results/<dataset>/baselines.json (rule baselines) as the notebook parameter `baselines`")
    references = baselines.groupby("dataset")["reference"].sum()
    if (references != 1).any():
        bad = ", ".join(references[references != 1].index)
        raise ValueError(f"baselines of {bad}: each dataset needs exactly one reference baseline; "
                         f"rerun rule baselines for it (snakemake --forcerun baselines)")
    return baselines.reset_index(drop=True)


def baseline_margins(runs: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model): the mean test bits/dim over seeds, the dataset's reference baseline
    and the margin model − baseline (negative: the model is better), whether the model beats it,
    and what the reasons it might not depend on (exact or bound, how it was trained, whether a run of it
    was stopped by its step ceiling rather than by early stopping, discrete or real-valued data)."""
    references = baselines[baselines["reference"]].set_index("dataset")
    missing = sorted(set(runs["dataset"]) - set(references.index))
    if missing:
        raise ValueError(f"no baselines for dataset(s) {', '.join(missing)}: add results/<dataset>/baselines.json "
                         f"(snakemake results/{missing[0]}/baselines.json) to the likelihood analysis's `baselines`")
    rows = []
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        reference = references.loc[dataset]
        test = float(group["test_bpd"].mean())
        margin = test - float(reference["test_bpd"])
        rows.append({
            "dataset": dataset, "model": model, "test_bpd": test, "baseline": reference["label"],
            "baseline_bpd": float(reference["test_bpd"]), "margin": margin, "beats": bool(margin < 0),
            "exact": bool(group["exact"].all()), "discrete": bool(reference["discrete"]),
            "distilled": bool(group["trained_by"].str.startswith("density distillation").any()),
            "ceiling": bool((~group["converged"].astype(bool)).any()),
        })
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
            rows.append({
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
            })
        for baseline in baselines[baselines["dataset"] == dataset].itertuples(index=False):
            rows.append({
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
            })
    return pd.DataFrame(rows)


# Why a model may not beat its dataset's reference baseline, in the order the page gives them;
# each applies to the (model, dataset) pairs that :func:`_causes` finds.
WHY_NOT = {
    "dequantised": (
        "A flow on images is trained and scored on uniformly dequantised data x + u, so its bits/dim are those of "
        "a density of dequantised data: log P(x) ≥ E_u[log p(x + u)], the density bounds the flow's discrete "
        "log-likelihood from below, and its bits/dim exceed its discrete cost by a gap (the dequantisation gap) "
        "that the baselines, exact discrete likelihoods, never pay; Flow++ learns its dequantisation noise "
        "q(u | x) to narrow that gap"),
    "bound": (
        "A bound model (the VAEs, and Flow++ on images) reports an importance-weighted lower bound on log P(x), "
        "not log P(x) itself, so its bits/dim lie above its own exact value by whatever gap the bound leaves"),
    "distilled": (
        "A student trained by density distillation minimises the reverse KL divergence to its teacher on its own "
        "samples; nothing in that objective asks it to give the test data any density"),
    "continuous": (
        "On real-valued data the flows and the Gaussian are both exact densities, with no accounting gap between "
        "them: a flow above the fitted Gaussian has not yet captured more than the data's mean and covariance"),
    "ceiling": (
        "A run stopped by its step ceiling rather than by early stopping was still improving when training "
        "stopped, so the study's training budget, not only the model family, limits it"),
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


def _pairs(frame: pd.DataFrame) -> str:
    """``"glow, maf on mnist; vae on toy2d"``: the models of ``frame``, by dataset."""
    return "; ".join(f"{', '.join(group['model'])} on {dataset}" for dataset, group in frame.groupby("dataset", sort=True))


def baseline_findings(margins: pd.DataFrame) -> dict[str, str]:
    """In words: which models do not beat their dataset's reference baseline (``summary``), and
    why, one reason per cause that applies to one of them (``explanation``)."""
    losing = margins[~margins["beats"]]
    if losing.empty:
        closest = margins.loc[margins["margin"].idxmax()]
        return {
            "summary": (f"Every model beat the reference baseline of its dataset ({len(margins)} model-dataset pairs); "
                        f"the closest was {closest['model']} on {closest['dataset']}, at {closest['margin']:+.3f} "
                        f"bits/dim against {closest['baseline']}."),
            "explanation": ("Each has learned dependencies between pixels (on the 2-D data: more than a mean and a "
                            "covariance), which the baselines lack by construction."),
        }
    listed = "; ".join(
        f"on {dataset}, {len(group)} of {int((margins['dataset'] == dataset).sum())} "
        f"({', '.join(f'{row.model} {row.margin:+.3f}' for row in group.itertuples(index=False))} bits/dim "
        f"against {group['baseline'].iloc[0]})"
        for dataset, group in losing.groupby("dataset", sort=True))
    causes = losing.apply(_causes, axis=1)
    reasons = []
    for key, text in WHY_NOT.items():
        applies = causes.map(lambda found, key=key: key in found)
        if applies.any():
            reasons.append(f"{text} (here: {_pairs(losing[applies])}).")
    return {
        "summary": (f"{len(losing)} of {len(margins)} model-dataset pairs did not beat the reference baseline of "
                    f"their dataset: {listed}."),
        "explanation": " ".join(reasons),
    }


def baseline_variables(margins: pd.DataFrame, baselines: pd.DataFrame) -> dict[str, Any]:
    """Numbers and sentences the prose quotes about the baselines, under ``baselines``: each
    baseline's bits/dim per split and parameters by dataset, each model's margin over the
    reference, the counts, and :func:`baseline_findings`."""
    out: dict[str, Any] = {"models_compared": int(len(margins)), "models_not_beating": int((~margins["beats"]).sum()),
                           **baseline_findings(margins)}
    for row in baselines[baselines["dataset"].isin(set(margins["dataset"]))].itertuples(index=False):
        entry = out.setdefault(row.dataset, {})
        entry[row.baseline] = {"train_bpd": f"{row.train_bpd:.3f}", "val_bpd": f"{row.val_bpd:.3f}",
                               "test_bpd": f"{row.test_bpd:.3f}", "parameters": int(row.parameters),
                               "quantity": row.quantity}
        if row.reference:
            entry["reference"] = row.label
    for dataset, group in margins.groupby("dataset", sort=True):
        losing = group[~group["beats"]]
        out[dataset]["not_beating"] = ", ".join(losing["model"]) if len(losing) else "none"
        out[dataset]["margins"] = {row.model: {"margin_bpd": f"{row.margin:+.3f}", "beats": bool(row.beats)}
                                   for row in group.itertuples(index=False)}
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
        rows.append({
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
        })
    return pd.DataFrame(rows).sort_values(["model", "dataset"]).reset_index(drop=True)


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Learning curves (the curves.csv beside each run's metrics) in long form: one row per (run, step, split)."""
    frames = []
    for dataset, model, seed, path in runs[["dataset", "model", "seed", "curves"]].itertuples(index=False):
        df = pd.read_csv(path)
        df = df.melt(id_vars=["step"], value_vars=["train_bits_per_dim", "val_bits_per_dim"],
                     var_name="split", value_name="bits_per_dim")
        df["split"] = df["split"].str.replace("_bits_per_dim", "", regex=False)
        frames.append(df.assign(dataset=dataset, model=model, seed=seed))
    return pd.concat(frames, ignore_index=True)


def _reference_lines(width: int) -> tuple[alt.Chart, alt.Chart]:
    """A grey dotted horizontal rule per baseline row (``layer == "baseline"``) and its label at the
    right edge of the panel."""
    baseline = alt.datum.layer == "baseline"
    y = alt.Y("bits_per_dim:Q", scale=alt.Scale(zero=False))  # the panel's scale, shared with the models' layers
    rules = alt.Chart().mark_rule(color="gray", strokeDash=[2, 2]).encode(
        y=y, tooltip=["dataset", alt.Tooltip("label:N", title="baseline"), alt.Tooltip("bits_per_dim:Q", format=".3f")],
    ).transform_filter(baseline)
    labels = alt.Chart().mark_text(align="right", baseline="bottom", dx=-2, dy=-1, fontSize=9, color="gray").encode(
        x=alt.value(width), y=y, text="label:N",
    ).transform_filter(baseline)
    return rules, labels


def within_worst_baseline(curves: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """The curve points no worse than their dataset's worst baseline (uniform over the levels): a
    point above it is worse than guessing, and one such point (an early step, a diverging run)
    would set the panel's axis and flatten every other curve."""
    worst = baselines.groupby("dataset")["val_bpd"].max()
    ceiling = curves["dataset"].map(worst).fillna(np.inf)
    return curves[curves["bits_per_dim"] <= ceiling]


def learning_curves_chart(curves: pd.DataFrame, baselines: pd.DataFrame) -> alt.FacetChart:
    """Bits/dim against training step, one panel per dataset (independent y), with each of the
    dataset's baselines at its validation bits/dim as a labelled horizontal rule; points worse
    than the dataset's worst baseline are left out (:func:`within_worst_baseline`)."""
    curves = within_worst_baseline(curves, baselines)
    shown = baselines[baselines["dataset"].isin(set(curves["dataset"]))]
    lines_of_baselines = pd.DataFrame({"dataset": shown["dataset"], "label": shown["label"] + " (baseline)",
                                       "bits_per_dim": shown["val_bpd"], "layer": "baseline"})
    data = pd.concat([curves.assign(layer="run"), lines_of_baselines], ignore_index=True)
    width = 220
    runs = alt.Chart().mark_line(point=False, opacity=0.85).encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("bits_per_dim:Q", title="bits/dim", scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", title="model"),
        strokeDash=alt.StrokeDash("split:N", title="split",
                                  scale=alt.Scale(domain=["train", "val"], range=[[1, 0], [5, 3]])),
        detail="seed:N",
        tooltip=["dataset", "model", "seed", "split", "step", alt.Tooltip("bits_per_dim:Q", format=".3f")],
    ).transform_filter(alt.datum.layer == "run")
    rules, labels = _reference_lines(width)
    return alt.layer(runs, rules, labels, data=data).properties(width=width, height=160).facet(
        facet=alt.Facet("dataset:N", title=None), columns=2).resolve_scale(y="independent")


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
        summary = (f"All {len(runs)} runs converged: each was stopped by early stopping, when its validation "
                   "bits/dim stopped improving, before its step ceiling.")
    else:
        named = "; ".join(f"{r.model} on {r.dataset}, seed {r.seed}, after {int(r.steps):,} steps"
                          for r in stopped.itertuples(index=False))
        summary = (f"{len(stopped)} of {len(runs)} runs did not converge, stopped by the step ceiling while their "
                   f"validation bits/dim was still improving: {named}. Every comparison that involves "
                   f"{'it' if len(stopped) == 1 else 'them'} is provisional."
                   + (f" The other {int(converged.sum())} were stopped by early stopping." if converged.any() else ""))
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
        rows.append({
            "dataset": dataset,
            "model": model,
            "quantity": "exact" if group["exact"].all() else "single-draw bound",
            "train bits/dim": _mean_sd(group["train_bpd"]),
            "val bits/dim": _mean_sd(group["val_bpd"]),
            "test bits/dim": _mean_sd(group["test_single"]),
            "gap test − train": _mean_sd(group["gap"]),
        })
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
            rows.append({"dataset": p.dataset, "model": p.model, "seed": p.seed, "k": int(k),
                         "bits_per_dim": float(_bpd(values.mean(), dims[p.dataset])), "exact": False})
    for run in runs[runs["exact"] & runs["dataset"].isin(list(examples))].itertuples(index=False):
        with np.load(run.scores) as scores:
            values = scores["log_likelihood"][: examples[run.dataset]]
        rows.append({"dataset": run.dataset, "model": run.model, "seed": run.seed, "k": float("nan"),
                     "bits_per_dim": float(_bpd(values.mean(), run.num_dims)), "exact": True})
    return pd.DataFrame(rows)


def baselines_on_examples(baselines: pd.DataFrame, probes: list[ProbeResult]) -> pd.DataFrame:
    """Each probed dataset's reference baseline scored on the probe's test examples (the first
    ones of the test split, as :func:`iwae_curves`): dataset, label, bits_per_dim."""
    rows = []
    for dataset, n in probe_examples(probes).items():
        for row in baselines[(baselines["dataset"] == dataset) & baselines["reference"]].itertuples(index=False):
            with np.load(row.scores) as scores:
                values = scores[row.baseline][:n]
            rows.append({"dataset": dataset, "label": row.label,
                         "bits_per_dim": float(_bpd(values.mean(), row.num_dims))})
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
        {d: f"{g.min():.3f} ({g.idxmin()[1]})" for d, g in best_exact})
    table["reference baseline (same examples)"] = table["dataset"].map(
        {row.dataset: f"{row.bits_per_dim:.3f} ({row.label})" for row in references.itertuples(index=False)})
    return table


def iwae_chart(curves: pd.DataFrame, references: pd.DataFrame) -> alt.FacetChart:
    """IWAE-k bits/dim against k (log scale) for the bound models, with each exact flow's value
    on the same examples as a horizontal rule, and the dataset's reference baseline on the same
    examples as a labelled grey rule; one panel per dataset."""
    means = curves.groupby(["dataset", "model", "k", "exact"], dropna=False)["bits_per_dim"].mean().reset_index()
    means["layer"] = np.where(means["exact"], "exact", "bound")
    shown = references[references["dataset"].isin(set(means["dataset"]))]
    data = pd.concat([means, shown.assign(label=shown["label"] + " (baseline)", layer="baseline")], ignore_index=True)
    width = 230
    lines = alt.Chart().mark_line(point=True).encode(
        x=alt.X("k:Q", scale=alt.Scale(type="log"), title="k (importance samples)"),
        y=alt.Y("bits_per_dim:Q", scale=alt.Scale(zero=False), title="bits/dim (lower is better)"),
        color=alt.Color("model:N"),
        tooltip=["dataset", "model", "k", alt.Tooltip("bits_per_dim:Q", format=".4f")],
    ).transform_filter(alt.datum.layer == "bound")
    rules = alt.Chart().mark_rule(strokeDash=[4, 3]).encode(
        y="bits_per_dim:Q", color=alt.Color("model:N"),
        tooltip=["dataset", "model", alt.Tooltip("bits_per_dim:Q", format=".4f")],
    ).transform_filter(alt.datum.layer == "exact")
    baseline_rules, baseline_labels = _reference_lines(width)
    return alt.layer(lines, rules, baseline_rules, baseline_labels, data=data).properties(
        width=width, height=170).facet(facet=alt.Facet("dataset:N", title=None), columns=2).resolve_scale(y="independent")


def per_class(runs: pd.DataFrame) -> pd.DataFrame:
    """Test bits/dim (the headline quantity) per class, per run, on the datasets with labels."""
    rows = []
    for run in runs.itertuples(index=False):
        with np.load(run.scores) as scores:
            if "labels" not in scores.files or run.dataset not in ("digits", "mnist"):
                continue
            frame = pd.DataFrame({"label": scores["labels"], "bpd": _bpd(scores["log_likelihood"], run.num_dims)})
        for label, group in frame.groupby("label"):
            rows.append({"dataset": run.dataset, "model": run.model, "seed": run.seed, "class": int(label),
                         "bits_per_dim": float(group["bpd"].mean())})
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


def per_class_chart(classes: pd.DataFrame) -> alt.FacetChart:
    means = classes.groupby(["dataset", "model", "class"])["bits_per_dim"].mean().reset_index()
    return alt.Chart(means).mark_line(point=True).encode(
        x=alt.X("class:O", title="class"),
        y=alt.Y("bits_per_dim:Q", scale=alt.Scale(zero=False), title="test bits/dim"),
        color="model:N",
        tooltip=["dataset", "model", "class", alt.Tooltip("bits_per_dim:Q", format=".3f")],
    ).properties(width=260, height=170).facet(facet=alt.Facet("dataset:N", title=None), columns=2).resolve_scale(
        y="independent")


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
            out.setdefault("iwae", {}).setdefault(dataset, {}).update({
                "best_exact_model": str(finite.idxmin()[1]), "best_exact_bpd": round(float(finite.min()), 3)})
    for (dataset, model), group in bound.groupby(level=["dataset", "model"]):
        ks = group.index.get_level_values("k")
        first, last = group.iloc[0], group.iloc[-1]
        monotone = bool((np.diff(group.to_numpy()) <= 1e-9).all())
        entry = out.setdefault("iwae", {}).setdefault(dataset, {})
        entry[model] = {
            "k_max": int(ks.max()), "elbo_bpd": round(float(first), 3), "iwae_max_bpd": round(float(last), 3),
            "tightening_bpd": round(float(first - last), 3), "non_increasing": monotone,
        }
        if dataset in best_exact:
            entry[model]["vs_best_exact_bpd"] = round(float(last) - best_exact[dataset], 3)
    if not classes.empty:
        spread = classes.groupby(["dataset", "model", "class"])["bits_per_dim"].mean().groupby(["dataset", "model"])
        for (dataset, model), group in spread:
            out.setdefault("per_class", {}).setdefault(dataset, {})[model] = {
                "easiest": int(group.idxmin()[2]), "hardest": int(group.idxmax()[2]),
                "spread_bpd": round(float(group.max() - group.min()), 3),
            }
    return out
