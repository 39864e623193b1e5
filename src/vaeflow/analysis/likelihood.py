"""The likelihood analysis: test bits/dim per model and dataset, and learning curves.

Flows give the exact density of dequantised data; VAEs give bounds (ELBO, IWAE-k).
Every number carries the name of the quantity it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd


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
            "trained_by": m.get("trained_by", ""),
            "samples_per_s": m["throughput"]["samples_per_s"],
            "density_evals_per_s": m["throughput"]["density_evals_per_s"],
            "nonfinite_samples": m.get("nonfinite_samples", 0),
            "curves": str(Path(path).with_name("curves.csv")),
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
    """Numbers the prose quotes, as formatted strings keyed by dataset and model."""
    out: dict[str, Any] = {"runs": int(len(runs)), "seeds": int(runs["seed"].nunique())}
    for (dataset, model), group in runs.groupby(["dataset", "model"], sort=True):
        out.setdefault(dataset, {})[model] = {
            "test_bpd": _mean_sd(group["test_bpd"]),
            "bound": ", ".join(sorted(group["bound"].unique())),
        }
    return out
