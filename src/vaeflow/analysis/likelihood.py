"""The likelihood analysis: exact likelihoods against bounds.

Test bits/dim per model and dataset; the ELBO → IWAE-k curve of the bound models against the
flows' exact values on the same test examples; train/val/test gaps; per-class bits/dim on the
labelled datasets; learning curves. Flows give the exact density of dequantised data; VAEs
(and Flow++ on images) give bounds. Every number carries the name of the quantity it is.
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

TABLES = ("likelihood", "models", "likelihood_gaps", "likelihood_iwae", "likelihood_per_class")
FIGURES = ("learning_curves", "likelihood_iwae_curve", "likelihood_per_class")


def load_runs(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """One row per trained run, from its metrics.json."""
    rows = []
    for path in metrics_paths:
        m: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
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
            "train_wall_time_s": m["train_wall_time_s"],
            "steps": m["steps"],
            "best_step": m.get("best_step", math.nan),
            "trained_by": m.get("trained_by", ""),
            "samples_per_s": m["throughput"]["samples_per_s"],
            "density_evals_per_s": m["throughput"]["density_evals_per_s"],
            "nonfinite_samples": m.get("nonfinite_samples", 0),
            "curves": str(Path(path).with_name("curves.csv")),
            "scores": str(Path(path).with_name("test_scores.npz")),
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


def likelihood_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Test bits/dim per dataset × model: mean ± sd over seeds, with the quantity named."""
    rows = []
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        rows.append({
            "dataset": dataset,
            "model": model,
            "likelihood": "exact" if group["exact"].all() else "bound",
            "test quantity": ", ".join(sorted(group["bound"].unique())),
            "test bits/dim": _mean_sd(group["test_bpd"]),
            "test single-draw bound bits/dim": _mean_sd(group["test_elbo_bpd"].astype(float)),
            "seeds": int(group["seed"].nunique()),
            "parameters": int(group["parameters"].iloc[0]),
            "train time (s)": f"{group['train_wall_time_s'].mean():.0f}",
        })
    return pd.DataFrame(rows)


def models_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model and dataset: size, cost and test bits/dim (means over seeds), and how it was trained."""
    rows = []
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        rows.append({
            "model": model,
            "dataset": dataset,
            "parameters": int(group["parameters"].iloc[0]),
            "trained by": ", ".join(sorted(group["trained_by"].unique())),
            "steps": int(group["steps"].iloc[0]),
            "train time (s)": round(float(group["train_wall_time_s"].mean()), 1),
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


def learning_curves_chart(curves: pd.DataFrame) -> alt.FacetChart:
    """Bits/dim against training step, one panel per dataset (independent y)."""
    base = alt.Chart(curves).mark_line(point=False, opacity=0.85).encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("bits_per_dim:Q", title="bits/dim", scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", title="model"),
        strokeDash=alt.StrokeDash("split:N", title="split",
                                  scale=alt.Scale(domain=["train", "val"], range=[[1, 0], [5, 3]])),
        detail="seed:N",
        tooltip=["dataset", "model", "seed", "split", "step", alt.Tooltip("bits_per_dim:Q", format=".3f")],
    ).properties(width=220, height=160)
    return base.facet(facet=alt.Facet("dataset:N", title=None), columns=2).resolve_scale(y="independent")


def variables(runs: pd.DataFrame) -> dict[str, Any]:
    """Numbers the prose quotes, as formatted strings keyed by dataset and model; ``runs_best_at_last_step``
    counts the runs whose kept (best-validation) checkpoint is their last step: still improving at the end."""
    out: dict[str, Any] = {"runs": int(len(runs)), "seeds": int(runs["seed"].nunique())}
    if "best_step" in runs:
        out["runs_best_at_last_step"] = int((runs["best_step"] == runs["steps"]).sum())
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        out.setdefault(dataset, {})[model] = {
            "test_bpd": _mean_sd(group["test_bpd"]),
            "bound": ", ".join(sorted(group["bound"].unique())),
        }
    return out


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


def iwae_curves(probes: list[ProbeResult], runs: pd.DataFrame) -> pd.DataFrame:
    """Long form: bits/dim of IWAE-k per (dataset, model, seed, k), on the probe's test examples,
    plus one row per exact model and seed (``k`` = NaN) scored on the same examples."""
    dims = runs.groupby("dataset")["num_dims"].first().to_dict()
    rows = []
    examples: dict[str, int] = {}
    for p in probes:
        n = p.arrays["iwae_nats"].shape[1]
        examples[p.dataset] = min(examples.get(p.dataset, n), n)
        for k, values in zip(p.arrays["k"], p.arrays["iwae_nats"]):
            rows.append({"dataset": p.dataset, "model": p.model, "seed": p.seed, "k": int(k),
                         "bits_per_dim": float(_bpd(values.mean(), dims[p.dataset])), "exact": False})
    for run in runs[runs["exact"] & runs["dataset"].isin(list(examples))].itertuples(index=False):
        with np.load(run.scores) as scores:
            values = scores["log_likelihood"][: examples[run.dataset]]
        rows.append({"dataset": run.dataset, "model": run.model, "seed": run.seed, "k": float("nan"),
                     "bits_per_dim": float(_bpd(values.mean(), run.num_dims)), "exact": True})
    return pd.DataFrame(rows)


def iwae_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Bits/dim per (dataset, model) at each k (mean ± sd over seeds); exact models in one column."""
    bound = curves[~curves["exact"]]
    table = bound.groupby(["dataset", "model", "k"])["bits_per_dim"].apply(_mean_sd).unstack("k")
    table.columns = [f"k={int(k)}" for k in table.columns]
    table = table.reset_index()
    best_exact = curves[curves["exact"]].groupby(["dataset", "model"])["bits_per_dim"].mean().groupby("dataset")
    table["best exact flow (same examples)"] = table["dataset"].map(
        {d: f"{g.min():.3f} ({g.idxmin()[1]})" for d, g in best_exact})
    return table


def iwae_chart(curves: pd.DataFrame) -> alt.FacetChart:
    """IWAE-k bits/dim against k (log scale) for the bound models, with each exact flow's value
    on the same examples as a horizontal rule; one panel per dataset."""
    means = curves.groupby(["dataset", "model", "k", "exact"], dropna=False)["bits_per_dim"].mean().reset_index()
    lines = alt.Chart().mark_line(point=True).encode(
        x=alt.X("k:Q", scale=alt.Scale(type="log"), title="k (importance samples)"),
        y=alt.Y("bits_per_dim:Q", scale=alt.Scale(zero=False), title="bits/dim (lower is better)"),
        color=alt.Color("model:N"),
        tooltip=["dataset", "model", "k", alt.Tooltip("bits_per_dim:Q", format=".4f")],
    ).transform_filter("!datum.exact")
    rules = alt.Chart().mark_rule(strokeDash=[4, 3]).encode(
        y="bits_per_dim:Q", color=alt.Color("model:N"),
        tooltip=["dataset", "model", alt.Tooltip("bits_per_dim:Q", format=".4f")],
    ).transform_filter("datum.exact")
    return alt.layer(lines, rules, data=means).properties(width=230, height=170).facet(
        facet=alt.Facet("dataset:N", title=None), columns=2).resolve_scale(y="independent")


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
