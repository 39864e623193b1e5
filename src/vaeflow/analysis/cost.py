"""The cost analysis: what each model costs to train, to sample from and to evaluate.

Reads, per run, ``metrics.json`` (parameters, steps, sampling and density-evaluation throughput,
FFJORD's function evaluations), the ``train.json`` beside it (batch size, teacher), ``timing.json``
(training wall time and peak memory, overall and at every evaluation) and ``curves.csv``
(validation bits/dim per evaluation, timed through ``timing.json``). Three comparisons:

* the bill per model (:func:`summary_table`): time per step, wall time, peak memory, throughput, NFE;
* time to a common target (:func:`time_to_target`): the first elapsed second at which a run's
  validation bits/dim reached a per-dataset target. Curves hold one point per ``eval_every`` steps,
  so this is the first *evaluation* at or below the target (an upper bound at that resolution);
* equal wall time (:func:`value_at_budget`): the best validation bits/dim a run had validated
  within the same budget of seconds — the model the engine would have kept had it stopped then.

Elapsed seconds and wall time include the periodic validation passes, as the engine measures them;
they were measured on whatever machine ran the study (shared CPU cores: expect noise between seeds).
Nothing missing is invented: a run without ``train.json`` fields shows "not recorded", a run
without ``curves.csv`` shows "no curves.csv", a target never reached shows "not reached".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from vaeflow.analysis.figures import (
    BASELINE_COLOUR,
    DASH,
    NBSP,
    Shown,
    code_legend,
    constant_columns,
    model_color,
    model_label,
    model_order,
    readable,
    readable_text,
    short_codes,
)
from vaeflow.analysis.likelihood import load_baselines

# The tables and figures this analysis writes (results/tables/<stem>.csv and .md, results/figures/<stem>.*),
# each with its caption, written only here: a title (its heading in Snakemake's report) and the caption
# (Quarto Markdown). The site and the report show it (vaeflow.analysis.captions).
TABLES = {
    "cost_summary": {
        "title": "The bill per model",
        "caption": (
            "Per dataset and model, mean ± sd over seeds: how it was trained, parameters, steps and batch "
            "size, milliseconds per training step (validation included), training wall time, peak resident "
            "memory, samples and density evaluations per second, and FFJORD's function evaluations per ODE "
            'solve in training (fixed-step solver) and in evaluation (adaptive solver). "not recorded" marks '
            "a number the run's training did not record."
        ),
    },
    "cost_time_to_target": {
        "title": "Time to a common target",
        "caption": (
            "Per dataset and model: how many seeds reached the dataset's target validation bits/dim (the "
            "legend under the table gives each target and how it was set), the elapsed training seconds and "
            "the step at which they first did (mean ± sd over the seeds that reached it), the best validation "
            'bits/dim reached at all, and how often validation ran. "not reached" marks a model none of whose '
            "seeds got there."
        ),
    },
    "cost_budget": {
        "title": "Equal wall time",
        "caption": (
            "Per dataset and model: the best validation bits/dim the run had validated within the dataset's "
            "wall-time budget (the legend under the table gives each budget and where it came from), or when "
            "its first validation came, if later; its rank among the models, the share of training done by "
            "then, and the final validation bits/dim for contrast."
        ),
    },
    "cost_speed_vs_peers": {
        "title": "Speed against peer libraries",
        "caption": (
            "Per benchmarked model: the data it ran on, both sides' parameters and milliseconds per training "
            "step, and ours / peer time ratios (below 1: ours is faster) for the training step as each "
            "library trains (ours with the study's fused Adam, the peer with torch's default Adam, as "
            "pythae's trainer and the examples of normflows and zuko use it), the same step with the fused "
            "Adam on both sides, sampling and density evaluation. The last columns give our step's achieved "
            "GFLOP/s (matmul and convolution FLOPs, forward and backward, counted by torch) and its share of "
            "this machine's single-thread fp32 matmul peak."
        ),
    },
}
FIGURES = {
    "cost_val_vs_time": {
        "title": "Validation bits/dim against wall time",
        "caption": (
            "Validation bits/dim against elapsed training seconds (log axis), one panel per dataset, one line "
            "per run coloured by model (the same colours on every figure). The dashed horizontal rule is the "
            "dataset's target, the dotted vertical rule the equal wall-time budget, and the grey dotted "
            "horizontal rules, labelled, are the dataset's sanity baselines that fall within the panel's "
            "range. Models whose best validation lies far above the others are left off the axis and named in "
            "red under the panel title."
        ),
    },
    "cost_throughput": {
        "title": "Sampling against density-evaluation throughput",
        "caption": (
            "Throughput of sampling against density evaluation (log-log; means over seeds), colour by model "
            "and shape by dataset. On the diagonal both directions are equally fast; below it density "
            "evaluation is the faster direction, above it sampling."
        ),
    },
}

#: the ``analyses.cost`` settings and their defaults
DEFAULTS: dict[str, Any] = {
    "target_bpd": {},  # {dataset: bits/dim}: explicit targets; datasets not named use target_quantile
    "target_quantile": 0.5,  # target = this quantile over models of each model's best validation bits/dim
    "budget_s": {},  # {dataset: seconds}: explicit wall-time budgets; others use budget_fraction
    "budget_fraction": 1.0,  # budget = this fraction of the smallest mean training time among the models
    "off_scale_factor": 2.0,  # val_vs_time figure: y axis up to this × the median over models of their best
    # val bits/dim; models whose best lies above are named "off scale"
}

NOT_RECORDED = "not recorded"
NO_CURVES = "no curves.csv"
NOT_REACHED = "not reached"


# -- settings -------------------------------------------------------------------------------------


def resolve_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``analyses.cost`` block with defaults filled in; unknown keys and bad values are errors."""
    given = dict(settings or {})
    given.pop("seed", None)  # the workflow adds the run seed to every analysis block
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"analyses.cost: unknown setting(s) {unknown}; known: {sorted(DEFAULTS)}. Fix the cost block of the config."
        )
    out = {**DEFAULTS, **given}
    q = out["target_quantile"]
    if not isinstance(q, (int, float)) or not 0.0 <= float(q) <= 1.0:
        raise ValueError(f"analyses.cost.target_quantile must be a number in [0, 1], got {q!r}")
    f = out["budget_fraction"]
    if not isinstance(f, (int, float)) or not float(f) > 0.0:
        raise ValueError(f"analyses.cost.budget_fraction must be a positive number, got {f!r}")
    if not isinstance(out["off_scale_factor"], (int, float)) or not out["off_scale_factor"] > 1.0:
        raise ValueError(f"analyses.cost.off_scale_factor must be a number > 1, got {out['off_scale_factor']!r}")
    for key, positive in (("target_bpd", False), ("budget_s", True)):  # bits/dim of real-valued data may be < 0
        if not isinstance(out[key], Mapping):
            raise ValueError(f"analyses.cost.{key} must map dataset names to numbers, got {out[key]!r}")
        for dataset, value in out[key].items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
                raise ValueError(
                    f"analyses.cost.{key}.{dataset} must be a {'positive' if positive else 'finite'} "
                    f"number, got {value!r}"
                )
    return out


# -- loading --------------------------------------------------------------------------------------


def _nfe(diagnostics: Mapping[str, Any], key: str) -> float:
    value = diagnostics.get(key)
    return float(value) if value is not None else math.nan


def format_options(options: Mapping[str, Any]) -> str:
    """A run's model options as the model was built, in words: ``"hidden = 256, latent_dim = 16"`` (keys sorted)."""
    return ", ".join(f"{key} = {value}" for key, value in sorted(options.items())) if options else "none (defaults)"


def load_runs(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """One row per run from its ``metrics.json``, with ``train.json`` fields where that file has them.

    Columns missing from a run's files are NaN (numbers) or ``None``; the tables print them as
    "not recorded". ``curves`` holds the path of ``curves.csv`` or ``None`` when it is absent.
    """
    rows = []
    for path in metrics_paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"cost analysis: {path} does not exist; evaluate that run first or drop it from the metrics list"
            )
        m: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        train_path = path.with_name("train.json")
        t: dict[str, Any] = json.loads(train_path.read_text(encoding="utf-8")) if train_path.exists() else {}
        timing_path = path.with_name("timing.json")
        if not timing_path.exists():
            raise FileNotFoundError(
                f"cost analysis: {timing_path} does not exist; retrain that run with the "
                "current engine (it writes the run's wall time and memory there)"
            )
        cost: dict[str, Any] = json.loads(timing_path.read_text(encoding="utf-8"))
        training = t.get("run", {}).get("training", {})
        # the options the model was built with (its width fitted to the parameter budget), else the config's
        options = t.get("options", t.get("run", {}).get("options"))
        curves = path.with_name("curves.csv")
        rows.append(
            {
                "dataset": m["dataset"],
                "model": m["model"],
                "seed": int(m["seed"]),
                "trained_by": m.get("trained_by", ""),
                "teacher": training.get("teacher"),
                "device": m.get("device", t.get("device", "")),
                "parameters": int(m["parameters"]),
                "steps": int(m["steps"]),
                "batch_size": float(training["batch_size"]) if "batch_size" in training else math.nan,
                "lr": float(training["lr"]) if "lr" in training else math.nan,
                "options": format_options(options) if options is not None else None,
                "train_wall_time_s": float(cost["train_wall_time_s"]),
                "eval_wall_time_s": float(m.get("eval_wall_time_s", math.nan)),
                "samples_per_s": float(m["throughput"]["samples_per_s"]),
                "density_evals_per_s": float(m["throughput"]["density_evals_per_s"]),
                "peak_rss_mib": float(cost["peak_rss_mib"]) if "peak_rss_mib" in cost else math.nan,
                "peak_cuda_mib": float(cost["peak_cuda_mib"]) if "peak_cuda_mib" in cost else math.nan,
                # FFJORD (any model that reports solver function evaluations)
                "nfe_train": _nfe(m.get("train_diagnostics", {}), "nfe_forward_mean"),
                "nfe_train_backward": _nfe(m.get("train_diagnostics", {}), "nfe_backward"),
                "nfe_eval": _nfe(m.get("diagnostics", {}), "nfe_eval_mean"),
                "val_bpd": float(m["val"]["bits_per_dim"]),
                "test_bpd": float(m["test"]["bits_per_dim"]),
                "curves": str(curves) if curves.exists() else None,
                "timing": str(timing_path),
            }
        )
    runs = pd.DataFrame(rows)
    if runs.empty:
        raise ValueError(
            "no runs given to the cost analysis; check the metrics paths "
            "(results/{dataset}/{model}/seed{N}/metrics.json)"
        )
    duplicated = runs.duplicated(["dataset", "model", "seed"])
    if duplicated.any():
        raise ValueError(
            f"the same run given twice: {runs.loc[duplicated, ['dataset', 'model', 'seed']].to_dict('records')}"
        )
    runs["step_ms"] = 1000.0 * runs["train_wall_time_s"] / runs["steps"]
    return runs.sort_values(["dataset", "model", "seed"]).reset_index(drop=True)


def load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """Validation curves of every run that has a ``curves.csv``: columns dataset, model, seed, step,
    elapsed_s, val_bpd, peak_rss_mib. The seconds and memory at each evaluation come from the run's
    ``timing.json`` (the engine keeps what training cost apart from what it computed)."""
    frames = []
    for dataset, model, seed, path, timing in runs[["dataset", "model", "seed", "curves", "timing"]].itertuples(
        index=False
    ):
        if not isinstance(path, str):  # no curves.csv (None, read back as a missing value)
            continue
        df = pd.read_csv(path)
        missing = {"step", "val_bits_per_dim"} - set(df.columns)
        if missing:
            raise ValueError(f"{path} lacks column(s) {sorted(missing)}; retrain that run with the current engine")
        evaluations = pd.DataFrame(
            json.loads(Path(timing).read_text(encoding="utf-8"))["evaluations"],
            columns=["step", "elapsed_s", "peak_rss_mib"],
        )
        df = df.merge(evaluations, on="step", how="left", validate="one_to_one")
        if df["elapsed_s"].isna().any():
            raise ValueError(
                f"{timing} has no time for step(s) {df.loc[df['elapsed_s'].isna(), 'step'].tolist()} "
                f"of {path}; retrain that run"
            )
        frames.append(
            pd.DataFrame(
                {
                    "dataset": dataset,
                    "model": model,
                    "seed": seed,
                    "step": df["step"].astype(int),
                    "elapsed_s": df["elapsed_s"].astype(float),
                    "val_bpd": df["val_bits_per_dim"].astype(float),
                    "peak_rss_mib": df["peak_rss_mib"].astype(float),
                }
            )
        )
    columns = ["dataset", "model", "seed", "step", "elapsed_s", "val_bpd", "peak_rss_mib"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return (
        pd.concat(frames, ignore_index=True)[columns]
        .sort_values(["dataset", "model", "seed", "step"])
        .reset_index(drop=True)
    )


# -- the per-run computations -----------------------------------------------------------------------


def time_to_target(curve: pd.DataFrame, target: float) -> tuple[float, float]:
    """``(elapsed_s, step)`` of the first evaluation of ``curve`` (rows in step order) with validation
    bits/dim ≤ ``target``; ``(nan, nan)`` when no evaluation reached it."""
    curve = curve.sort_values("step")
    hit = curve[curve["val_bpd"] <= target]
    if hit.empty:
        return math.nan, math.nan
    first = hit.iloc[0]
    return float(first["elapsed_s"]), float(first["step"])


def value_at_budget(curve: pd.DataFrame, budget_s: float) -> tuple[float, float]:
    """``(best val bits/dim, step)`` among the evaluations of ``curve`` made within ``budget_s`` seconds:
    the checkpoint the engine would have kept had it stopped then; ``(nan, nan)`` if none was made."""
    within = curve[curve["elapsed_s"] <= budget_s]
    if within.empty:
        return math.nan, math.nan
    best = within.loc[within["val_bpd"].idxmin()]
    return float(best["val_bpd"]), float(best["step"])


def targets(curves: pd.DataFrame, runs: pd.DataFrame, settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per dataset: ``{"target": bits/dim, "how": words}``. An explicit ``target_bpd`` wins; otherwise
    the ``target_quantile`` (linear interpolation) over models of each model's best validation bits/dim
    (minimum over its curve, mean over seeds)."""
    s = resolve_settings(settings)
    out: dict[str, dict[str, Any]] = {}
    for dataset in sorted(runs["dataset"].unique()):
        if dataset in s["target_bpd"]:
            out[dataset] = {"target": float(s["target_bpd"][dataset]), "how": "set in the config"}
            continue
        d = curves[curves["dataset"] == dataset]
        if d.empty:
            out[dataset] = {"target": math.nan, "how": "no curves.csv for any run"}
            continue
        best = d.groupby(["model", "seed"])["val_bpd"].min().groupby("model").mean()
        q = float(s["target_quantile"])
        out[dataset] = {
            "target": float(np.quantile(best.to_numpy(), q)),
            "how": f"quantile {q:g} over {len(best)} models of their best val bits/dim",
        }
    return out


def budgets(runs: pd.DataFrame, settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per dataset: ``{"budget_s": seconds, "how": words}``. An explicit ``budget_s`` wins; otherwise
    ``budget_fraction`` × the smallest mean (over seeds) training wall time among the dataset's models."""
    s = resolve_settings(settings)
    out: dict[str, dict[str, Any]] = {}
    for dataset, group in runs.groupby("dataset", sort=True):
        if dataset in s["budget_s"]:
            out[dataset] = {"budget_s": float(s["budget_s"][dataset]), "how": "set in the config"}
            continue
        per_model = group.groupby("model")["train_wall_time_s"].mean()
        fraction = float(s["budget_fraction"])
        out[dataset] = {
            "budget_s": fraction * float(per_model.min()),
            "how": f"{fraction:g} × the shortest mean training time ({per_model.idxmin()})",
        }
    return out


def per_run(
    runs: pd.DataFrame,
    curves: pd.DataFrame,
    target: Mapping[str, Mapping[str, Any]],
    budget: Mapping[str, Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per run: time/step to target, best val bits/dim within the budget, first evaluation."""
    rows = []
    for run in runs.itertuples(index=False):
        row = {
            "dataset": run.dataset,
            "model": run.model,
            "seed": run.seed,
            "has_curves": isinstance(run.curves, str),
            "target": target[run.dataset]["target"],
            "budget_s": budget[run.dataset]["budget_s"],
            "time_to_target_s": math.nan,
            "step_at_target": math.nan,
            "bpd_at_budget": math.nan,
            "step_at_budget": math.nan,
            "steps_by_budget": math.nan,
            "first_eval_s": math.nan,
            "first_eval_step": math.nan,
            "final_val_bpd": math.nan,
            "best_val_bpd": math.nan,
            "steps": run.steps,
        }
        c = curves[(curves["dataset"] == run.dataset) & (curves["model"] == run.model) & (curves["seed"] == run.seed)]
        if not c.empty:
            if math.isfinite(row["target"]):
                row["time_to_target_s"], row["step_at_target"] = time_to_target(c, row["target"])
            row["bpd_at_budget"], row["step_at_budget"] = value_at_budget(c, row["budget_s"])
            done = c.loc[c["elapsed_s"] <= row["budget_s"], "step"]
            row["steps_by_budget"] = float(done.max()) if not done.empty else math.nan
            row["first_eval_s"], row["first_eval_step"] = float(c["elapsed_s"].iloc[0]), float(c["step"].iloc[0])
            row["final_val_bpd"] = float(c["val_bpd"].iloc[-1])
            row["best_val_bpd"] = float(c["val_bpd"].min())
        rows.append(row)
    return pd.DataFrame(rows)


# -- formatting -------------------------------------------------------------------------------------


def sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, without exponent (12345 → "12,300", 0.01234 → "0.0123")."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, decimals)
    return f"{rounded:,.{max(decimals, 0)}f}"


def mean_sd(values: pd.Series, digits: int = 3, missing: str = NOT_RECORDED, integer: bool = False) -> str:
    """ "mean ± sd" over the finite values (sd with ddof=1; only the mean for one value); ``missing``
    when there is none. Fewer values than rows is said: "(n of N seeds)". ``integer``: whole numbers
    (step counts) instead of ``digits`` significant figures."""
    values = pd.Series(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.empty:
        return missing
    form = (lambda v, d: f"{round(v):,}") if integer else sig
    text = form(float(finite.mean()), digits)
    if len(finite) > 1:
        text += f" ± {form(float(finite.std(ddof=1)), 2)}"
    if len(finite) < len(values):
        text += f" ({len(finite)} of {len(values)} seeds)"
    return text


def _distinct(values: pd.Series) -> str:
    """The distinct recorded values as integers ("64", "32, 64"), saying how many seeds lack one."""
    values = pd.Series(values, dtype=float)
    known = values[np.isfinite(values)]
    text = ", ".join(str(int(v)) for v in sorted(set(known))) if not known.empty else NOT_RECORDED
    if 0 < len(known) < len(values):
        text += f" ({NOT_RECORDED} for {len(values) - len(known)} of {len(values)} seeds)"
    return text


# -- tables -----------------------------------------------------------------------------------------


def summary_table(runs: pd.DataFrame, benchmarks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset × model: size, time per step, wall time, peak memory, throughput, solver NFE.

    Mean ± sd over seeds. ``benchmarks`` (optional): a frame with ``dataset`` and ``model`` columns
    whose other columns are joined onto the table as they are (the place for the benchmark summary).
    """
    any_cuda = runs["device"].astype(str).str.startswith("cuda").any()
    has_nfe = runs[["nfe_train", "nfe_eval"]].notna().any(axis=None)
    rows = []
    for (dataset, model), g in runs.groupby(["dataset", "model"], sort=True):
        teacher = g["teacher"].dropna().unique()
        row = {
            "dataset": dataset,
            "model": model,
            "trained by": ", ".join(sorted(set(g["trained_by"]))),
            "seeds": int(len(g)),
            "parameters": ", ".join(str(p) for p in sorted(set(g["parameters"]))),
            "steps": ", ".join(str(s) for s in sorted(set(g["steps"]))),
            "batch": _distinct(g["batch_size"]),
            "ms/step (incl. validation)": mean_sd(g["step_ms"]),
            "train time (s)": mean_sd(g["train_wall_time_s"]),
            "peak RSS (MiB)": mean_sd(g["peak_rss_mib"]),
        }
        if any_cuda:
            row["peak GPU (MiB)"] = mean_sd(g["peak_cuda_mib"], missing="not recorded / CPU run")
        row.update(
            {
                "samples/s": mean_sd(g["samples_per_s"]),
                "density evals/s": mean_sd(g["density_evals_per_s"]),
            }
        )
        if has_nfe:
            row["NFE per training solve"] = mean_sd(g["nfe_train"], missing="–")
            row["NFE per evaluation solve"] = mean_sd(g["nfe_eval"], missing="–")
        if len(teacher):
            row["trained by"] += f" (teacher's cost not included: see {', '.join(teacher)})"
        rows.append(row)
    table = pd.DataFrame(rows)
    if benchmarks is not None:
        missing = {"dataset", "model"} - set(benchmarks.columns)
        if missing:
            raise ValueError(f"summary_table: the benchmarks frame lacks column(s) {sorted(missing)}")
        table = table.merge(benchmarks, on=["dataset", "model"], how="left", validate="one_to_one")
    return table


def time_to_target_table(per_run_df: pd.DataFrame, target: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per dataset × model: the target, how many seeds reached it, and the time and step when they did
    (mean ± sd over the seeds that reached it)."""
    rows = []
    for (dataset, model), g in per_run_df.groupby(["dataset", "model"], sort=True):
        with_curves = g[g["has_curves"]]
        reached = with_curves[np.isfinite(with_curves["time_to_target_s"])]
        status = NO_CURVES if with_curves.empty else (NOT_REACHED if reached.empty else "")
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "target val bits/dim": sig(target[dataset]["target"], 4),
                "target from": target[dataset]["how"],
                "seeds reached": f"{len(reached)} of {len(with_curves)}"
                + (f" ({len(g) - len(with_curves)} without curves.csv)" if len(with_curves) < len(g) else ""),
                "time to target (s)": status or mean_sd(reached["time_to_target_s"]),
                "step at target": status or mean_sd(reached["step_at_target"], integer=True),
                "best val bits/dim reached": mean_sd(g["best_val_bpd"], 4, missing=NO_CURVES),
                "evaluated every (steps)": mean_sd(with_curves["first_eval_step"], missing=NO_CURVES, integer=True),
            }
        )
    return pd.DataFrame(rows)


def budget_table(per_run_df: pd.DataFrame, budget: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per dataset × model: the best validation bits/dim validated within an equal wall-time budget,
    the share of training steps done by then (to the last evaluation within it), and the final
    validation bits/dim for contrast."""
    rows = []
    for (dataset, model), g in per_run_df.groupby(["dataset", "model"], sort=True):
        with_curves = g[g["has_curves"]]
        evaluated = with_curves[np.isfinite(with_curves["bpd_at_budget"])]
        if with_curves.empty:
            at_budget = NO_CURVES
        elif evaluated.empty:
            at_budget = f"no validation within budget (first at {sig(float(with_curves['first_eval_s'].min()))} s)"
        else:
            at_budget = mean_sd(evaluated["bpd_at_budget"], 4)
            if len(evaluated) < len(with_curves):
                at_budget += f" ({len(with_curves) - len(evaluated)} seed(s) not yet validated)"
        if not with_curves.empty and len(with_curves) < len(g):
            at_budget += f" ({len(g) - len(with_curves)} seed(s) without curves.csv)"
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "budget (s)": sig(budget[dataset]["budget_s"]),
                "budget from": budget[dataset]["how"],
                "val bits/dim within budget": at_budget,
                "rank within budget": "",
                "training done at budget (%)": mean_sd(
                    100.0 * evaluated["steps_by_budget"] / evaluated["steps"], missing="–"
                ),
                "final val bits/dim": mean_sd(with_curves["final_val_bpd"], 4, missing=NO_CURVES),
                "_mean": float(evaluated["bpd_at_budget"].mean()) if not evaluated.empty else math.nan,
            }
        )
    table = pd.DataFrame(rows)
    table["rank within budget"] = (
        table.groupby("dataset")["_mean"].rank(method="min").map(lambda r: "–" if not math.isfinite(r) else str(int(r)))
    )
    return table.drop(columns="_mean")


# -- the tables as the site shows them ----------------------------------------------------------------

#: short codes of how a model was trained (spelled out in the legend)
TRAINING_CODES = {"maximum likelihood": "ML", "its variational-dequantisation bound": "VD bound", "its ELBO": "ELBO"}


def _in_model_order(table: pd.DataFrame) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(model_order(table["model"]))}
    return (
        table.assign(_r=table["model"].map(rank))
        .sort_values(["dataset", "_r"], kind="stable")
        .drop(columns="_r")
        .reset_index(drop=True)
    )


def _per_dataset(table: pd.DataFrame, value: str, how: str) -> str:
    """``"digits 4.14 (…), mnist 2.2 (…)"``: a setting that is the same on every row of a dataset."""
    first = table.drop_duplicates("dataset")
    return "; ".join(f"{row['dataset']} {readable_text(str(row[value]))} ({row[how]})" for _, row in first.iterrows())


def summary_shown(table: pd.DataFrame) -> Shown:
    """The cost summary as the site shows it: "mean ± sd" on one line to 3 significant figures, how each model
    was trained as a short code."""
    table = _in_model_order(table)
    codes = short_codes(
        table["trained by"],
        {
            **TRAINING_CODES,
            **{
                t: "distilled (" + t.split("density distillation from ", 1)[1].split(" ")[0] + ")"
                for t in table["trained by"]
                if t.startswith("density distillation from ")
            },
        },
    )
    shown, constant = constant_columns(
        readable(table.assign(**{"trained by": table["trained by"].map(codes)})), ["seeds", "batch"]
    )
    notes = ["Mean ± sd over seeds (the mean alone for one seed)." + (f" {constant}" if constant else "")]
    legend = code_legend(codes)
    if legend:
        notes.append("Trained by: " + legend)
    return Shown(shown, notes)


def time_to_target_shown(table: pd.DataFrame) -> Shown:
    """The time-to-target table as the site shows it: each dataset's target in the legend, not on every row."""
    table = _in_model_order(table)
    shown = readable(table.drop(columns=["target val bits/dim", "target from"]))
    return Shown(
        shown,
        [
            f"Targets, validation bits/dim: {_per_dataset(table, 'target val bits/dim', 'target from')}. "
            "Times and steps: mean ± sd over the seeds that reached the target."
        ],
    )


def budget_shown(table: pd.DataFrame) -> Shown:
    """The equal-budget table as the site shows it: each dataset's budget in the legend, not on every row."""
    table = _in_model_order(table)
    shown = readable(table.drop(columns=["budget (s)", "budget from"]))
    return Shown(
        shown,
        [
            f"Budgets, seconds of training: {_per_dataset(table, 'budget (s)', 'budget from')}. "
            "Bits/dim and shares: mean ± sd over seeds; rank 1: the lowest bits/dim within the budget."
        ],
    )


#: a hyphen the browser does not break a line at ("64-D" stays whole in a narrow column)
NB_HYPHEN = "\u2011"


def speed_shown(table: pd.DataFrame) -> Shown:
    """The speed benchmark's table as the site shows it: the model by its name, the peer by its library (each
    peer's class named in the legend), ours and the peer's sizes and step times as "ours / peer" in one cell."""

    def pair(ours: str, peer: str) -> pd.Series:
        return (
            table[ours]
            .astype(str)
            .where(table[peer].astype(str) == DASH, table[ours].astype(str) + " / " + table[peer].astype(str))
        )

    has_peer = ~table["peer"].str.startswith("none")
    labels = table["model"].map(model_label)
    shown = pd.DataFrame(
        {
            "model": labels,
            "data": table["data"].str.replace(r"^(\S+) as (\d+)-D vectors$", rf"\1{NBSP}(\2{NB_HYPHEN}D)", regex=True),
            "peer": table["peer"].str.split(r"[ .]").str[0].where(has_peer, "none"),
            "params, ours / peer": pair("ours params", "peer params"),
            "ms/step, ours / peer": pair("ours ms/step", "peer ms/step"),
            "step ratio": table["step ratio"],
            "same optimizer": table["step ratio, same optimizer"],
            "sampling ratio": table["sampling ratio"],
            "density ratio": table["density ratio"],
            "GFLOP/s": table["ours GFLOP/s"],
            "% of peak": table["% of matmul peak"],
        }
    )
    peers = dict.fromkeys(labels[has_peer] + ": " + table["peer"][has_peer])
    alone = list(dict.fromkeys(labels[~has_peer]))
    said = ([f"Peers: {'; '.join(peers)}."] if peers else []) + (
        [f"No peer library implements {', '.join(alone)}: timed alone."] if alone else []
    )
    notes = [
        "Ratios: ours / peer time (below 1: ours is faster); *step ratio*: each library's training step as it "
        "trains; *same optimizer*: both with the study's optimizer. *GFLOP/s* and *% of peak*: our step's "
        "arithmetic rate and its share of the single-thread fp32 matrix-product peak. *(64-D)*: the images "
        "as flat vectors, for both sides' vector architecture.",
        " ".join(said),
    ]
    return Shown(readable(shown), notes)


# -- figures ----------------------------------------------------------------------------------------


def off_scale(curves: pd.DataFrame, factor: float) -> dict[str, dict[str, Any]]:
    """Per dataset: the y-axis cut-off (``factor`` × the median over models of their best val bits/dim,
    mean over seeds; ``median + (factor-1)·|median|`` in general) and the models whose best lies above it."""
    out = {}
    for dataset, d in curves.groupby("dataset", sort=True):
        best = d.groupby(["model", "seed"])["val_bpd"].min().groupby("model").mean()
        median = float(best.median())
        top = median + (factor - 1.0) * abs(median)  # = factor × median for positive bits/dim
        out[dataset] = {"top": top, "models": {m: float(v) for m, v in best.items() if v > top}}
    return out


def val_vs_time_chart(
    curves: pd.DataFrame,
    target: Mapping[str, Mapping[str, Any]],
    budget: Mapping[str, Mapping[str, Any]],
    factor: float = DEFAULTS["off_scale_factor"],
    columns: int = 2,
    baselines: pd.DataFrame | None = None,
) -> alt.ConcatChart:
    """Validation bits/dim against elapsed training seconds (log x), one panel per dataset, colour =
    model, one line per seed; dashed horizontal rule = target, dotted vertical rule = budget; the
    dataset's sanity baselines (``baselines``: dataset, label, val_bpd; :func:`load_baseline_lines`) that
    fall within the panel's range as labelled grey dotted horizontal rules.
    The y axis stops at ``off_scale`` top; models entirely above it are named in the panel title."""
    if curves.empty:
        raise ValueError("val_vs_time_chart: no curves.csv was found for any run")
    colour = model_color(curves["model"])
    scale = off_scale(curves, factor)
    panels = []
    for dataset, d in curves.groupby("dataset", sort=True):
        shown = d[d["val_bpd"] <= scale[dataset]["top"]]
        low, top = float(shown["val_bpd"].min()), float(shown["val_bpd"].max())  # the median model is always shown
        if math.isfinite(target[dataset]["target"]):
            low, top = min(low, target[dataset]["target"]), max(top, target[dataset]["target"])
        pad = 0.04 * (top - low) if top > low else 0.05
        low, top = low - pad, top + pad
        title = [dataset]
        if scale[dataset]["models"]:
            title.append("off scale: " + ", ".join(f"{m} (best {sig(v)})" for m, v in scale[dataset]["models"].items()))
        y = alt.Y("val_bpd:Q", title="validation bits/dim", scale=alt.Scale(domain=[low, top], zero=False))
        lines = (
            alt.Chart(d)
            .mark_line(point=True, clip=True, opacity=0.85)
            .encode(
                x=alt.X("elapsed_s:Q", title="elapsed training seconds (log)", scale=alt.Scale(type="log")),
                y=y,
                color=colour,
                detail="seed:N",
                tooltip=[
                    "model",
                    "seed",
                    "step",
                    alt.Tooltip("elapsed_s:Q", format=".1f"),
                    alt.Tooltip("val_bpd:Q", format=".3f"),
                ],
            )
        )
        layers = [lines]
        if math.isfinite(target[dataset]["target"]):
            layers.append(
                alt.Chart(pd.DataFrame({"target": [target[dataset]["target"]]}))
                .mark_rule(strokeDash=[6, 3], color="black")
                .encode(y=alt.Y("target:Q"))
            )
        layers.append(
            alt.Chart(pd.DataFrame({"budget_s": [budget[dataset]["budget_s"]]}))
            .mark_rule(strokeDash=[2, 2], color="grey")
            .encode(x=alt.X("budget_s:Q"))
        )
        if baselines is not None:
            inside = baselines[(baselines["dataset"] == dataset) & baselines["val_bpd"].between(low, top)]
            if len(inside):
                lines = inside.assign(label=inside["label"] + " (baseline)")[["label", "val_bpd"]]
                layers.append(
                    alt.Chart(lines)
                    .mark_rule(color=BASELINE_COLOUR, strokeDash=[1, 3])
                    .encode(
                        y=alt.Y("val_bpd:Q"),
                        tooltip=[alt.Tooltip("label:N", title="baseline"), alt.Tooltip("val_bpd:Q", format=".3f")],
                    )
                )
                layers.append(
                    alt.Chart(lines)
                    .mark_text(align="right", baseline="bottom", dx=-2, dy=-1, fontSize=9, color=BASELINE_COLOUR)
                    .encode(x=alt.value(260), y=alt.Y("val_bpd:Q"), text="label:N")
                )
        panels.append(
            alt.layer(*layers).properties(
                width=260,
                height=180,
                title=alt.Title(
                    title[0], subtitle=title[1:], subtitleColor="#b00020", subtitleFontSize=10, anchor="start"
                ),
            )
        )
    off = [f"{m} on {d}" for d, entry in scale.items() for m in entry["models"]]
    description = (
        "Line charts of validation bits/dim against elapsed training seconds (log scale), one panel per dataset ("
        + ", ".join(sorted(scale))
        + "), one line per run coloured by model; a dashed black line marks the dataset's "
        "target and a dotted grey vertical line the equal wall-time budget"
        + (
            "; grey dotted horizontal lines, labelled, are the dataset's sanity baselines within the panel's range"
            if baselines is not None
            else ""
        )
        + (f"; off the scale, named in the panel titles: {', '.join(off)}." if off else ".")
    )
    return alt.concat(*panels, columns=columns).properties(description=description)


def load_baseline_lines(paths: list[str | Path]) -> pd.DataFrame:
    """Every dataset's sanity baselines at their validation bits/dim, from its ``baselines.json`` (rule
    ``baselines``, read by :func:`vaeflow.analysis.likelihood.load_baselines`): dataset, label, val_bpd;
    an empty frame without paths."""
    columns = ["dataset", "label", "val_bpd"]
    return load_baselines(paths)[columns].astype({"val_bpd": float}) if paths else pd.DataFrame(columns=columns)


def throughput_chart(runs: pd.DataFrame) -> alt.LayerChart:
    """Samples/s against density evaluations/s (log-log, mean over seeds), colour = model, shape =
    dataset, with the diagonal of equal speed: below it density evaluation is the faster direction."""
    means = runs.groupby(["dataset", "model"], as_index=False)[["samples_per_s", "density_evals_per_s"]].mean()
    lo = float(means[["samples_per_s", "density_evals_per_s"]].min().min()) / 2
    hi = float(means[["samples_per_s", "density_evals_per_s"]].max().max()) * 2
    x = alt.X(
        "density_evals_per_s:Q", title="density evaluations / s (log)", scale=alt.Scale(type="log", domain=[lo, hi])
    )
    y = alt.Y("samples_per_s:Q", title="samples / s (log)", scale=alt.Scale(type="log", domain=[lo, hi]))
    diagonal = (
        alt.Chart(pd.DataFrame({"density_evals_per_s": [lo, hi], "samples_per_s": [lo, hi]}))
        .mark_line(color="grey", strokeDash=[4, 4])
        .encode(x=x, y=y)
    )
    points = (
        alt.Chart(means)
        .mark_point(size=70, filled=True)
        .encode(
            x=x,
            y=y,
            color=model_color(means["model"]),
            shape=alt.Shape("dataset:N", title="dataset"),
            tooltip=[
                "dataset",
                "model",
                alt.Tooltip("samples_per_s:Q", format=",.0f"),
                alt.Tooltip("density_evals_per_s:Q", format=",.0f"),
            ],
        )
    )
    return alt.layer(diagonal, points).properties(
        width=380,
        height=380,
        description=(
            "Scatter plot, log-log, of sampling throughput (samples per second, vertical) against density-evaluation "
            "throughput (evaluations per second, horizontal), one point per model and dataset (means over seeds), "
            "colour by model and shape by dataset ("
            + ", ".join(sorted(means["dataset"].unique()))
            + "); a dashed grey "
            "diagonal marks equal speed: below it density evaluation is the faster direction, above it sampling."
        ),
    )


# -- numbers the prose quotes ---------------------------------------------------------------------

# -- the speed benchmark (benchmarks/speed.py) ------------------------------------------------------


def load_speed(path: str | Path) -> dict[str, Any]:
    """The speed benchmark's results (``results/benchmarks/speed.json``), checked for what the
    table and variables read."""
    path = Path(path)
    try:
        speed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(
            f"cannot read the speed benchmark {path}: {error}; rebuild it with "
            "`snakemake --cores 2 results/benchmarks/speed.json`"
        ) from error
    for key in ("matmul_peak_flop_per_s", "results", "settings"):
        if key not in speed:
            raise ValueError(f"{path} has no {key!r}: not a benchmarks/speed.py result; rebuild it")
    return speed


def _speed_ratio(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}"


def speed_table(speed: Mapping[str, Any]) -> pd.DataFrame:
    """One row per benchmarked model: ours against its peer library at equal parameter count.

    Ratios are ours / peer *time* (below 1: ours is faster): the training step as each library
    trains (ours with the study's fused Adam, the peer with torch's default Adam), the same
    step with the study's optimizer on both sides, sampling and density evaluation; then our
    step's achieved GFLOP/s and its share of the single-thread fp32 matmul peak.
    """
    rows = []
    for r in speed["results"]:
        ours, peer = r["ours"], r.get("peer")
        rows.append(
            {
                "model": r["model"],
                "data": r["data"],
                "ours params": f"{ours['parameters']:,}",
                "peer": peer["implementation"] if peer else "none (no peer library implements it)",
                "peer params": f"{peer['parameters']:,}" if peer else "–",
                "ours ms/step": f"{1000 * ours['step_time_s']:.2f}",
                "peer ms/step": f"{1000 * peer['step_time_s']:.2f}" if peer else "–",
                "step ratio": _speed_ratio(r.get("step_time_ratio")),
                "step ratio, same optimizer": _speed_ratio(r.get("step_time_ratio_same_optimizer")),
                "sampling ratio": _speed_ratio(r.get("sample_time_ratio")),
                "density ratio": _speed_ratio(r.get("density_time_ratio")),
                "ours GFLOP/s": sig(ours["achieved_flop_per_s"] / 1e9),
                "% of matmul peak": sig(100 * ours["fraction_of_peak"], 2),
            }
        )
    return pd.DataFrame(rows)


def speed_variables(speed: Mapping[str, Any]) -> dict[str, Any]:
    """The benchmark's headline numbers: the matmul peak, the worst and best step ratios, and per
    benchmarked model (``<model>_<dataset>``) its ratios and FLOP rate."""
    results = speed["results"]
    paired = [r for r in results if r.get("step_time_ratio") is not None]
    out: dict[str, Any] = {
        "matmul_peak_gflops": _r(speed["matmul_peak_flop_per_s"] / 1e9),
        "reps": int(speed["settings"]["reps"]),
        "pairs": len(paired),
        "pairs_faster": sum(r["step_time_ratio"] <= 1.0 for r in paired),
        "pairs_faster_same_optimizer": sum(r["step_time_ratio_same_optimizer"] <= 1.0 for r in paired),
    }
    if paired:
        worst = max(paired, key=lambda r: r["step_time_ratio_same_optimizer"])
        out["worst_same_optimizer_model"] = model_label(worst["model"])
        out["worst_same_optimizer_ratio"] = _r(worst["step_time_ratio_same_optimizer"])
        best = min(paired, key=lambda r: r["step_time_ratio"])
        out["best_step_model"] = model_label(best["model"])
        out["best_step_ratio"] = _r(best["step_time_ratio"])
        out["max_step_ratio"] = _r(max(r["step_time_ratio"] for r in paired))
    top = max(results, key=lambda r: r["ours"]["fraction_of_peak"]) if results else None
    if top is not None:
        out["best_peak_model"] = model_label(top["model"])
        out["best_peak_percent"] = _r(100 * top["ours"]["fraction_of_peak"])
    for r in results:
        key = f"{r['model']}_{r['dataset']}"
        entry = {
            "ms_per_step": _r(1000 * r["ours"]["step_time_s"]),
            "gflops": _r(r["ours"]["achieved_flop_per_s"] / 1e9),
            "percent_of_peak": _r(100 * r["ours"]["fraction_of_peak"]),
        }
        if r.get("peer"):
            entry.update(
                {
                    "peer": r["peer"]["implementation"],
                    "peer_ms_per_step": _r(1000 * r["peer"]["step_time_s"]),
                    "step_ratio": _r(r["step_time_ratio"]),
                    "step_ratio_same_optimizer": _r(r["step_time_ratio_same_optimizer"]),
                    "sampling_ratio": _r(r["sample_time_ratio"]),
                    "density_ratio": _r(r["density_time_ratio"]),
                }
            )
        out[key] = entry
    return out


def _r(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def variables(
    runs: pd.DataFrame,
    per_run_df: pd.DataFrame,
    target: Mapping[str, Mapping[str, Any]],
    budget: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Per dataset: fastest/slowest model per step, first to the target, best within the budget, the
    largest peak memory, FFJORD's NFE and the MAF/IAF throughput asymmetry, and each model's size, budget,
    options and speeds (:func:`model_variables`), as plain numbers/strings."""
    out: dict[str, Any] = {
        "runs": int(len(runs)),
        "seeds": int(runs["seed"].nunique()),
        # what the build trained on, and the training it cost, for the landing page
        "devices": ", ".join(sorted({str(d) for d in runs["device"] if d})) or NOT_RECORDED,
        "train_hours": sig(runs["train_wall_time_s"].sum() / 3600.0),
    }
    for dataset, g in runs.groupby("dataset", sort=True):
        means = g.groupby("model")[
            ["step_ms", "samples_per_s", "density_evals_per_s", "peak_rss_mib", "nfe_train", "nfe_eval"]
        ].mean()
        v: dict[str, Any] = {
            "fastest_step_model": model_label(str(means["step_ms"].idxmin())),
            "fastest_step_ms": _r(means["step_ms"].min()),
            "slowest_step_model": model_label(str(means["step_ms"].idxmax())),
            "slowest_step_ms": _r(means["step_ms"].max()),
            "step_time_ratio": _r(means["step_ms"].max() / means["step_ms"].min()),
            "target_bpd": _r(target[dataset]["target"], 4) if math.isfinite(target[dataset]["target"]) else NO_CURVES,
            "budget_s": _r(budget[dataset]["budget_s"]),
        }
        pr = per_run_df[per_run_df["dataset"] == dataset]
        # a model reaches the target when every seed with curves does; its time is the mean over seeds
        reach = (
            pr[pr["has_curves"]]
            .groupby("model")["time_to_target_s"]
            .agg(lambda t: t.mean() if t.notna().all() else math.nan)
        )
        reach = reach.dropna()
        v["models_reaching_target"] = int(len(reach))
        v["first_to_target_model"] = model_label(str(reach.idxmin())) if len(reach) else NOT_REACHED
        v["first_to_target_s"] = _r(reach.min()) if len(reach) else NOT_REACHED
        at_budget = pr.groupby("model")["bpd_at_budget"].mean().dropna()
        v["best_within_budget_model"] = model_label(str(at_budget.idxmin())) if len(at_budget) else "none validated"
        v["best_within_budget_bpd"] = _r(at_budget.min(), 4) if len(at_budget) else "none validated"
        rss = means["peak_rss_mib"].dropna()
        v["peak_rss_max_model"] = model_label(str(rss.idxmax())) if len(rss) else NOT_RECORDED
        v["peak_rss_max_mib"] = _r(rss.max()) if len(rss) else NOT_RECORDED
        v.update(model_variables(g))
        out[dataset] = v
    return out


def model_variables(runs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per model of one dataset's runs: its size, budget and options as trained, and its speeds (means over
    seeds), for the pages that describe the models; a value a run did not record is "not recorded"."""
    out: dict[str, dict[str, Any]] = {}
    for model, g in runs.groupby("model", sort=True):
        first = g.iloc[0]

        def mean(column: str) -> str:
            values = g[column].dropna() if column in g else pd.Series(dtype=float)
            return sig(float(values.mean())) if len(values) else NOT_RECORDED

        options = first.get("options")
        lr = g["lr"].dropna() if "lr" in g else pd.Series(dtype=float)
        out[str(model)] = {
            "parameters": f"{int(first['parameters']):,}",
            "steps": int(first["steps"]),
            "batch_size": int(first["batch_size"]) if pd.notna(first.get("batch_size", math.nan)) else NOT_RECORDED,
            "lr": float(lr.iloc[0]) if len(lr) else NOT_RECORDED,
            "options": options if isinstance(options, str) else NOT_RECORDED,
            "trained_by": str(first["trained_by"]) or NOT_RECORDED,
            "step_ms": mean("step_ms"),
            "train_s": mean("train_wall_time_s"),
            "samples_per_s": mean("samples_per_s"),
            "density_evals_per_s": mean("density_evals_per_s"),
            # how much faster one direction is than the other (MAF: density; IAF: sampling)
            "density_over_sampling": _ratio(g, "density_evals_per_s", "samples_per_s"),
            "sampling_over_density": _ratio(g, "samples_per_s", "density_evals_per_s"),
            # function evaluations per ODE solve, for a model that solves one (FFJORD)
            "nfe_train_per_solve": _mean_of_all(g, "nfe_train"),
            "nfe_eval_per_solve": _mean_of_all(g, "nfe_eval"),
        }
    return out


def _ratio(runs: pd.DataFrame, numerator: str, denominator: str) -> float | str:
    """The ratio of two columns' means over the runs (3 significant figures), or "not recorded"."""
    top, bottom = _mean_of_all(runs, numerator), _mean_of_all(runs, denominator)
    if isinstance(top, str) or isinstance(bottom, str) or bottom <= 0:
        return NOT_RECORDED
    return _r(top / bottom)


def _mean_of_all(runs: pd.DataFrame, column: str) -> float | str:
    """A column's mean over the runs where every run recorded a finite value, else "not recorded"."""
    values = pd.to_numeric(runs[column], errors="coerce") if column in runs else pd.Series(dtype=float)
    if not len(values) or not np.isfinite(values).all():
        return NOT_RECORDED
    return _r(float(values.mean()))
