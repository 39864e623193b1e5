"""The anomaly analysis: likelihood-based out-of-distribution detection and two remedies.

From each image run's anomaly probe (:mod:`vaeflow.probes.anomaly`: per-example bits/dim of
an in-distribution test subset, a train subset and every out-of-distribution set, plus the
compressed length of every image) this computes, per run, per likelihood score the model
has (exact flows: ``log p`` of the dequantised data; VAEs: ELBO and IWAE-k; Flow++: its
variational-dequantisation bound and IW-k), per out-of-distribution (OOD) set and per
detection *method*:

* ``likelihood``: the score is the negative log-likelihood in bits/dim, NLL(x);
* ``typicality``: ``|NLL(x) - Ĥ|`` with ``Ĥ`` the mean train NLL (Nalisnick et al. 2019,
  "Detecting out-of-distribution inputs to deep generative models using typicality", eq. 4,
  per example, M = 1);
* ``typicality_batch``: the same test on batches of M consecutive examples of one set,
  ``|mean_batch NLL - Ĥ|`` (their batch test; ``len // M`` batches, the remainder left out);
* ``complexity_<compressor>``: ``S(x) = NLL(x) - L(x)/D`` in bits/dim, i.e. ``-log2 p(x) - L(x)``
  divided by D, with ``L(x)`` the compressed length in bits (Serrà et al. 2020, "Input
  complexity and out-of-distribution detection with likelihood-based generative models", eq. 2);

the AUROC and AUPR (:func:`sklearn.metrics.roc_auc_score`, :func:`~sklearn.metrics.average_precision_score`)
with OOD as the positive class and higher scores meaning "more anomalous". AUROC < 0.5 means
the method ranks the OOD inputs as *more* in-distribution than the test set: for the raw
likelihood this is the known failure of likelihood models on simpler inputs.

Non-finite scores are never dropped. A log-likelihood of ``-inf`` (bits/dim ``+inf``) or NaN
(an overflow) is ranked as the most anomalous score, tied with every other such score (the
model has rejected the input); a bits/dim of ``-inf`` as the least anomalous. Their counts are
columns of the metrics table. ``Ĥ`` is the mean of the finite train NLLs; the number of
non-finite train NLLs is counted beside it.

An OOD *dataset* reaches the model in the model's input form; how it was brought there (channels:
RGB to grey by BT.601 luma or grey to RGB by repetition; resizing; level mapping) is the probe's
``set_conversions`` and appears as ``ood_conversion`` in the metrics table and as the "OOD
conversion" column of the remedies and failures tables. A dataset the probe could not convert
(``skipped_sets``) is never dropped: it keeps rows with empty metrics, ``scored`` false and the
reason as its conversion (metrics table), shows as "skipped" in the AUROC and remedies tables, is
counted in the summary table and the variables, and is left out of every mean, count and figure
of scored cases.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import sklearn
from scipy.stats import mannwhitneyu
from scipy.stats import t as student_t
from sklearn.metrics import average_precision_score, roc_auc_score

from vaeflow.analysis.figures import (
    DASH,
    Shown,
    code_legend,
    mean_sd,
    model_label,
    model_order,
    readable,
    short_codes,
    sig,
)
from vaeflow.analysis.runs import ProbeResult, load_probes
from vaeflow.data import IMAGE_DATASETS  # torch-free at import, like this module

# The tables and figures this analysis writes (results/tables/<stem>.csv and .md, results/figures/<stem>.*),
# each with its caption, written only here: a title (its heading in Snakemake's report) and the caption
# (Quarto Markdown). The site and the report show it (vaeflow.analysis.captions).
TABLES = {
    "anomaly_auroc": {
        "title": "AUROC of the raw likelihood against every OOD set",
        "caption": (
            "AUROC of the raw likelihood (NLL in bits/dim), mean ± sd over seeds, for every in-distribution "
            "dataset, model and likelihood score of that model (rows; long score names as codes the legend "
            "spells out) against every OOD set (columns); below 0.5 the OOD images look *more* likely than "
            'the test images. "–" marks the in-distribution dataset itself.'
        ),
    },
    "anomaly_failures": {
        "title": "Every raw-likelihood failure, worst first",
        "caption": (
            "Every raw-likelihood case with mean AUROC below 0.5 (every likelihood score), worst first: the "
            "AUROC, in how many seeds it was below 0.5 and whether that was significant, the median NLL and "
            "the median compressed length (bits/dim) of the test images → of the OOD images, and the AUROC of "
            "each remedy on the same case. How each OOD set was converted is a code the legend spells out."
        ),
    },
    "anomaly_remedies": {
        "title": "Do the remedies repair it?",
        "caption": (
            "AUROC (mean ± sd over seeds) of every detection method (raw likelihood, typicality per image and "
            "per batch, input complexity with PNG and zlib) on the primary likelihood score, one row per "
            "in-distribution dataset, model and OOD set; how each OOD set was brought to the model's input "
            "form is a code the legend spells out."
        ),
    },
    "anomaly_summary": {
        "title": "How often the raw likelihood fails, and what the remedies repair",
        "caption": (
            "Every detection method over all cases of the primary likelihood score: mean and median AUROC, "
            "mean AUPR, the number of cases with AUROC below 0.5, the worst case, and of the raw likelihood's "
            "failures (*raw failures*) how many the method lifts above 0.5. A *case* is one in-distribution "
            "dataset, model and out-of-distribution (OOD) set; below 0.5 a score ranks the OOD images as more "
            "in-distribution than the test images themselves."
        ),
    },
    "anomaly_metrics": {
        "title": "Every number of the anomaly analysis",
        "caption": (
            "The long table the others are cut from: for every in-distribution dataset, model, likelihood "
            "score, OOD set and detection method, the AUROC and AUPR (mean ± sd over seeds, and AUPR's chance "
            "level), the seeds below 0.5 and the largest $p$ of the below-chance test over seeds, the numbers "
            "of images, the non-finite scores in each set, the entropy estimate $\\hat H$ (bits/dim), and the "
            "median NLL and compressed length of the test → OOD images. The CSV linked under it holds every "
            "column as computed."
        ),
    },
}
FIGURES = {
    "anomaly_auroc": {
        "title": "AUROC of every detection method",
        "caption": (
            "AUROC of every detection method (columns) for every model and OOD set, one row of panels per "
            "in-distribution dataset, on the primary likelihood score (mean over seeds). Red: below 0.5 (the "
            "OOD images ranked as more in-distribution); blue: above; white: chance."
        ),
    },
    "anomaly_bpd": {
        "title": "Likelihoods of in-distribution and OOD images",
        "caption": (
            "Distribution of the primary NLL (bits/dim, symmetric-log axis) of every scored set, one panel "
            "per in-distribution dataset and model: 10–90 % whiskers, 25–75 % box and a median tick; the "
            "training and in-distribution test images (grey, blue) come first, then the OOD sets (red). "
            "Wherever a red box sits below the blue one, the model finds that OOD set more likely than its "
            "own test images."
        ),
    },
}

SYNTHETIC_ORDER = ("noise", "constant", "inverted", "flipped")
REQUIRED_ARRAYS = (
    "sets",
    "set_roles",
    "set_kinds",
    "set_index",
    "score_names",
    "score_labels",
    "bits_per_dim",
    "compressors",
    "compressed_bits",
    "num_dims",
    "set_conversions",
    "skipped_sets",
    "skipped_reasons",
)
#: the cell of a skipped OOD set in the AUROC and remedies tables
SKIPPED = "skipped"


# --- scores and metrics --------------------------------------------------------------------


def rankable(scores: np.ndarray) -> np.ndarray:
    """``scores`` with NaN and ``+inf`` replaced by one value above every finite score, ``-inf`` by one below.

    The order of finite scores is kept; all NaN/``+inf`` tie as the most anomalous.
    """
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    if finite.all():
        return scores.copy()
    if finite.any():
        low, high = scores[finite].min(), scores[finite].max()
    else:
        low = high = 0.0
    span = max(1.0, high - low)
    out = scores.copy()
    out[np.isnan(scores) | (scores == np.inf)] = high + span
    out[scores == -np.inf] = low - span
    return out


def detection(in_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[float, float]:
    """(AUROC, AUPR) of separating ``ood_scores`` (positives) from ``in_scores``; higher = more anomalous."""
    if len(in_scores) == 0 or len(ood_scores) == 0:
        raise ValueError(
            f"detection needs scores of both classes, got {len(in_scores)} in-distribution "
            f"and {len(ood_scores)} out-of-distribution"
        )
    scores = rankable(np.concatenate([in_scores, ood_scores]))
    labels = np.concatenate([np.zeros(len(in_scores)), np.ones(len(ood_scores))])
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):  # finite by construction
        return float(roc_auc_score(labels, scores)), float(average_precision_score(labels, scores))


def p_below_chance(in_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """One-sided Mann–Whitney p-value for "OOD scores tend to be lower" (AUROC < 0.5), ties corrected."""
    scores = rankable(np.concatenate([in_scores, ood_scores]))
    ood, ind = scores[len(in_scores) :], scores[: len(in_scores)]
    if np.ptp(scores) == 0:
        return 1.0
    return float(mannwhitneyu(ood, ind, alternative="less").pvalue)


def entropy_estimate(train_bpd: np.ndarray) -> tuple[float, int]:
    """``Ĥ`` = mean of the finite train NLLs (bits/dim), and how many were non-finite (NaN where none is finite)."""
    train_bpd = np.asarray(train_bpd, dtype=np.float64)
    finite = np.isfinite(train_bpd)
    value = float(train_bpd[finite].mean()) if finite.any() else float("nan")
    return value, int((~finite).sum())


def typicality(bpd: np.ndarray, entropy: float) -> np.ndarray:
    """``|NLL - Ĥ|`` (non-finite NLL stays non-finite: +inf, or NaN)."""
    bpd = np.asarray(bpd, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.abs(bpd - entropy)


def batch_means(bpd: np.ndarray, size: int) -> np.ndarray:
    """Means of consecutive batches of ``size`` examples (``len // size`` batches; the remainder is left out)."""
    if size < 1:
        raise ValueError(f"typicality batch size must be a positive integer, got {size}")
    bpd = np.asarray(bpd, dtype=np.float64)
    n = len(bpd) // size
    if n == 0:
        raise ValueError(
            f"cannot form a batch of {size} from {len(bpd)} examples; lower analyses.anomaly."
            f"typicality_batch or raise the number of examples"
        )
    with np.errstate(invalid="ignore"):
        return bpd[: n * size].reshape(n, size).mean(axis=1)


def complexity(bpd: np.ndarray, bits: np.ndarray, num_dims: int) -> np.ndarray:
    """Serrà et al.'s ``S(x) = -log2 p(x) - L(x)`` per dimension: ``NLL (bits/dim) - L(x)/D``."""
    with np.errstate(invalid="ignore"):
        return np.asarray(bpd, dtype=np.float64) - np.asarray(bits, dtype=np.float64) / int(num_dims)


def method_names(compressors: list[str] | np.ndarray) -> list[str]:
    """The detection methods, in table order, for the given compressors."""
    return ["likelihood", "typicality", "typicality_batch", *[f"complexity_{c}" for c in compressors]]


def method_scores(
    bpd: np.ndarray, bits: np.ndarray, compressors: list[str], num_dims: int, entropy: float, typicality_batch: int
) -> dict[str, np.ndarray]:
    """The anomaly score of every method (:func:`method_names`) for one set's NLLs ``bpd`` and compressed
    lengths ``bits`` (one row per compressor); ``typicality_batch`` gives one score per batch, the others one per
    example."""
    return {
        "likelihood": np.asarray(bpd, dtype=np.float64),
        "typicality": typicality(bpd, entropy),
        "typicality_batch": typicality(batch_means(bpd, typicality_batch), entropy),
        **{f"complexity_{c}": complexity(bpd, bits[j], num_dims) for j, c in enumerate(compressors)},
    }


def _check(result: ProbeResult) -> None:
    missing = [key for key in REQUIRED_ARRAYS if key not in result.arrays]
    if missing:
        raise ValueError(
            f"{result.path} lacks {', '.join(missing)}; it was not written by the current anomaly "
            f"probe: rerun it (snakemake reruns it when its code changed)"
        )


def _median(bpd: np.ndarray) -> float:
    """Median with NaN counted as +inf (the ranking convention of :func:`rankable`)."""
    return float(np.median(np.where(np.isnan(bpd), np.inf, bpd)))


def run_metrics(result: ProbeResult, typicality_batch: int) -> pd.DataFrame:
    """One row per (likelihood score, OOD set, method) of one run: AUROC, AUPR, p-value, counts, medians, and
    how the OOD set was converted; a set the probe skipped has its rows with empty metrics and ``scored`` false."""
    _check(result)
    a = result.arrays
    sets = [str(s) for s in a["sets"]]
    roles = [str(r) for r in a["set_roles"]]
    kinds = [str(k) for k in a["set_kinds"]]
    conversions = [str(c) for c in a["set_conversions"]]
    if len(conversions) != len(sets) or len(a["skipped_sets"]) != len(a["skipped_reasons"]):
        raise ValueError(
            f"{result.path}: {len(conversions)} set_conversions for {len(sets)} sets, or "
            f"{len(a['skipped_sets'])} skipped_sets for {len(a['skipped_reasons'])} reasons; the file is "
            f"inconsistent: rerun the anomaly probe"
        )
    index, num_dims = a["set_index"], int(a["num_dims"])
    compressors = [str(c) for c in a["compressors"]]
    if roles.count("train") != 1 or roles.count("in") != 1:
        raise ValueError(f"{result.path}: expected one train and one in-distribution set, got roles {roles}")
    train, test = roles.index("train"), roles.index("in")
    rows = []
    score_names = [str(s) for s in a["score_names"]]
    complexity_in = a["compressed_bits"][0][index == test] / num_dims
    for s, (name, label) in enumerate(zip(score_names, a["score_labels"])):
        bpd = a["bits_per_dim"][s]
        entropy, nonfinite_train = entropy_estimate(bpd[index == train])
        in_bpd = bpd[index == test]
        in_scores = method_scores(
            in_bpd, a["compressed_bits"][:, index == test], compressors, num_dims, entropy, typicality_batch
        )

        def row(set_name: str, kind: str, conversion: str, method: str, ood: dict[str, Any]) -> dict[str, Any]:
            """One row: this score's in-distribution columns around the OOD set's (``ood``: its detection
            metrics, counts and medians), in the table's column order."""
            return {
                "dataset": result.dataset,
                "model": result.model,
                "seed": result.seed,
                "score": name,
                "likelihood": str(label),
                "primary": s == len(score_names) - 1,
                "ood": set_name,
                "ood_kind": kind,
                "ood_conversion": conversion,
                "scored": ood["scored"],
                "method": method,
                "auroc": ood["auroc"],
                "aupr": ood["aupr"],
                "p_below_chance": ood["p_below_chance"],
                "aupr_chance": ood["aupr_chance"],
                "n_in": int(len(in_bpd)),
                "n_ood": ood["n_ood"],
                "nonfinite_train": nonfinite_train,
                "nonfinite_in": int((~np.isfinite(in_bpd)).sum()),
                "nonfinite_ood": ood["nonfinite_ood"],
                "entropy_bpd": entropy,
                "median_bpd_in": _median(in_bpd),
                "median_bpd_ood": ood["median_bpd_ood"],
                f"median_{compressors[0]}_bpd_in": float(np.median(complexity_in)),
                f"median_{compressors[0]}_bpd_ood": ood["median_complexity_ood"],
            }

        for i, set_name in enumerate(sets):
            if roles[i] != "ood":
                continue
            ood_bpd = bpd[index == i]
            ood_scores = method_scores(
                ood_bpd, a["compressed_bits"][:, index == i], compressors, num_dims, entropy, typicality_batch
            )
            complexity_ood = a["compressed_bits"][0][index == i] / num_dims
            for method in method_names(compressors):
                auroc, aupr = detection(in_scores[method], ood_scores[method])
                rows.append(
                    row(
                        set_name,
                        kinds[i],
                        conversions[i],
                        method,
                        {
                            "scored": True,
                            "auroc": auroc,
                            "aupr": aupr,
                            "p_below_chance": p_below_chance(in_scores[method], ood_scores[method]),
                            "aupr_chance": len(ood_scores[method]) / (len(ood_scores[method]) + len(in_scores[method])),
                            "n_ood": int(len(ood_bpd)),
                            "nonfinite_ood": int((~np.isfinite(ood_bpd)).sum()),
                            "median_bpd_ood": _median(ood_bpd),
                            "median_complexity_ood": float(np.median(complexity_ood)),
                        },
                    )
                )
        skipped = {
            "scored": False,
            "auroc": math.nan,
            "aupr": math.nan,
            "p_below_chance": math.nan,
            "aupr_chance": math.nan,
            "n_ood": 0,
            "nonfinite_ood": 0,
            "median_bpd_ood": math.nan,
            "median_complexity_ood": math.nan,
        }
        for set_name, reason in zip(a["skipped_sets"], a["skipped_reasons"]):
            for method in method_names(compressors):
                rows.append(row(str(set_name), "dataset", f"{SKIPPED}: {reason}", method, skipped))
    return pd.DataFrame(rows)


def scored(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows of OOD sets the probe scored (every row of a frame without the ``scored`` column)."""
    return metrics[metrics["scored"].astype(bool)] if "scored" in metrics.columns else metrics


def load_metrics(probe_paths: list[str | Path], typicality_batch: int) -> pd.DataFrame:
    """Per-seed detection metrics of every probe file (one row per run, score, OOD set and method)."""
    if not probe_paths:
        raise ValueError(
            "no anomaly probe files given; run the probe rule first (results/{dataset}/{model}/"
            "seed{N}/probes/anomaly.npz) or pass their paths as the notebook's `probes`"
        )
    frames = [run_metrics(result, typicality_batch) for result in load_probes(list(probe_paths))]
    return pd.concat(frames, ignore_index=True)


# --- aggregation over seeds ----------------------------------------------------------------

_KEYS = ["dataset", "model", "likelihood", "score", "primary", "ood", "ood_kind", "ood_conversion", "scored", "method"]


def ood_order(names: list[str]) -> list[str]:
    """OOD set names in table order: the other datasets alphabetically, then the synthetic sets."""
    datasets = sorted(n for n in names if n not in SYNTHETIC_ORDER)
    return datasets + [n for n in SYNTHETIC_ORDER if n in names]


def aggregate(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd (ddof 1; NaN with one seed) over seeds of every metric, with seed counts and summed counts."""
    # AUROC of n vs n examples is a multiple of 1/n²: round away float noise, so a case at
    # exactly 0.5 is not counted as a failure (and the tables agree with their CSV)
    per_seed = per_seed.assign(auroc=per_seed["auroc"].round(12), aupr=per_seed["aupr"].round(12))
    grouped = per_seed.groupby(_KEYS, sort=False, dropna=False)
    medians = [c for c in per_seed.columns if c.startswith("median_")]
    out = grouped.agg(
        auroc=("auroc", "mean"),
        auroc_sd=("auroc", "std"),
        aupr=("aupr", "mean"),
        aupr_sd=("aupr", "std"),
        aupr_chance=("aupr_chance", "mean"),
        seeds=("seed", "nunique"),
        seeds_below_half=("auroc", lambda v: int((v < 0.5).sum())),
        p_below_chance_max=("p_below_chance", "max"),
        n_in=("n_in", "sum"),
        n_ood=("n_ood", "sum"),
        nonfinite_train=("nonfinite_train", "sum"),
        nonfinite_in=("nonfinite_in", "sum"),
        nonfinite_ood=("nonfinite_ood", "sum"),
        entropy_bpd=("entropy_bpd", "mean"),
        **{c: (c, "mean") for c in medians},
    ).reset_index()
    out["auroc"] = out["auroc"].round(12)
    out["aupr"] = out["aupr"].round(12)
    order = ood_order(list(out["ood"].unique()))
    methods = list(dict.fromkeys(per_seed["method"]))
    out["ood"] = pd.Categorical(out["ood"], order, ordered=True)
    out["method"] = pd.Categorical(out["method"], methods, ordered=True)
    out = out.sort_values(["dataset", "model", "score", "ood", "method"]).reset_index(drop=True)
    out["ood"] = out["ood"].astype(str)
    out["method"] = out["method"].astype(str)
    return out


def _mean_sd(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if pd.notna(sd) else f"{mean:.3f}"


def _cells(frame: pd.DataFrame) -> list[str]:
    """``mean ± sd`` of the AUROC per row, :data:`SKIPPED` for a set the probe could not convert."""
    return [_mean_sd(m, s) if ok else SKIPPED for m, s, ok in zip(frame["auroc"], frame["auroc_sd"], frame["scored"])]


def metrics_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Every number, rounded: the long table the other tables are cut from."""
    out = metrics.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].round(4)
    return out


def auroc_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Raw-likelihood AUROC (mean ± sd over seeds): in-distribution × model × likelihood score (``score``: ELBO,
    iwae-k, exact log p…), one column per OOD set; "skipped" where the probe could not convert the set (the
    reason is in the metrics table). How each set was converted: the remedies table."""
    raw = metrics[metrics["method"] == "likelihood"].copy()
    raw["value"] = _cells(raw)
    order = ood_order(list(raw["ood"].unique()))
    raw = raw.drop(columns="score").rename(columns={"likelihood": "score"})
    wide = raw.pivot_table(
        index=["dataset", "model", "score"], columns="ood", values="value", aggfunc="first", sort=False
    )
    wide = wide[order].fillna("–").reset_index()  # "–": the OOD set is the in-distribution dataset itself
    wide.columns.name = None
    return wide.rename(columns={"dataset": "in-distribution"}).sort_values(
        ["in-distribution", "model", "score"], ignore_index=True
    )


def remedies_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """AUROC (mean ± sd) of every method on the primary likelihood score, one row per in-distribution × model ×
    OOD set, with how the OOD set was brought to the model's input form ("skipped: reason" where it could not be)."""
    prim = metrics[metrics["primary"]].copy()
    prim["value"] = _cells(prim)
    methods = list(dict.fromkeys(prim["method"]))
    prim = prim.drop(columns="score").rename(columns={"likelihood": "score"})
    wide = prim.pivot_table(
        index=["dataset", "model", "score", "ood", "ood_conversion"],
        columns="method",
        values="value",
        aggfunc="first",
        sort=False,
    )
    wide = wide[methods].reset_index()
    wide.columns.name = None
    return wide.rename(columns={"dataset": "in-distribution", "ood": "OOD set", "ood_conversion": "OOD conversion"})


def failures(metrics: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Raw-likelihood cases (every likelihood score) with mean AUROC below ``threshold``, with the remedies' AUROC."""
    raw = metrics[(metrics["method"] == "likelihood") & (metrics["auroc"] < threshold)]
    keys = ["dataset", "model", "score", "ood"]
    remedies = metrics[metrics["method"] != "likelihood"].pivot_table(
        index=keys, columns="method", values="auroc", aggfunc="first"
    )
    remedies.columns = [f"auroc_{c}" for c in remedies.columns]
    out = raw.merge(remedies.reset_index(), on=keys, how="left")
    return out.sort_values("auroc").reset_index(drop=True)


def failures_table(metrics: pd.DataFrame, significance: float = 0.01) -> pd.DataFrame:
    """Where the raw likelihood mis-ranks an OOD set (AUROC < 0.5): how clearly, whether the OOD set is simpler
    (shorter compressed length), and the remedies' AUROC on the same case."""
    fail = failures(metrics)
    compress = next(
        (
            c[len("median_") : -len("_bpd_in")]
            for c in metrics.columns
            if c.startswith("median_") and c.endswith("_bpd_in") and c != "median_bpd_in"
        ),
        None,
    )
    rows = []
    for r in fail.to_dict("records"):
        row = {
            "in-distribution": r["dataset"],
            "model": r["model"],
            "score": r["likelihood"],
            "OOD set": r["ood"],
            "OOD conversion": r["ood_conversion"],
            "AUROC": _mean_sd(r["auroc"], r["auroc_sd"]),
            "seeds below 0.5": f"{r['seeds_below_half']}/{r['seeds']}",
            "significant": bool(r["p_below_chance_max"] < significance),
            "median bits/dim in": round(r["median_bpd_in"], 3),
            "median bits/dim OOD": round(r["median_bpd_ood"], 3),
        }
        if compress:
            row[f"median {compress} bits/dim in"] = round(r[f"median_{compress}_bpd_in"], 3)
            row[f"median {compress} bits/dim OOD"] = round(r[f"median_{compress}_bpd_ood"], 3)
        for col in [c for c in fail.columns if c.startswith("auroc_") and c != "auroc_sd"]:
            row[f"AUROC {col[len('auroc_') :]}"] = round(r[col], 3)
        rows.append(row)
    columns = [
        "in-distribution",
        "model",
        "score",
        "OOD set",
        "OOD conversion",
        "AUROC",
        "seeds below 0.5",
        "significant",
        "median bits/dim in",
        "median bits/dim OOD",
    ]
    return pd.DataFrame(rows, columns=columns if not rows else None)


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per method, over every (in-distribution, model, OOD set) case of the primary likelihood score:
    mean and median AUROC, cases below 0.5, the worst case, how many raw-likelihood failures it fixes, and
    how many cases were skipped (OOD sets the probe could not convert; in no other column)."""
    everything = metrics[metrics["primary"]]
    prim = scored(everything)
    skipped = everything[~everything.index.isin(prim.index)]
    raw_fail = prim[(prim["method"] == "likelihood") & (prim["auroc"] < 0.5)][["dataset", "model", "ood"]]
    rows = []
    for method, group in prim.groupby("method", sort=False):
        worst = group.loc[group["auroc"].idxmin()]
        fixed = group.merge(raw_fail, on=["dataset", "model", "ood"])
        rows.append(
            {
                "method": method,
                "cases": int(len(group)),
                "mean AUROC": round(float(group["auroc"].mean()), 3),
                "median AUROC": round(float(group["auroc"].median()), 3),
                "mean AUPR": round(float(group["aupr"].mean()), 3),
                "cases AUROC < 0.5": int((group["auroc"] < 0.5).sum()),
                "worst AUROC": round(float(worst["auroc"]), 3),
                "worst case": f"{worst['dataset']}/{worst['model']} vs {worst['ood']}",
                "raw failures": int(len(raw_fail)),
                "raw failures above 0.5": int((fixed["auroc"] > 0.5).sum()) if method != "likelihood" else 0,
                "cases skipped": int((skipped["method"] == method).sum()),
            }
        )
    return pd.DataFrame(rows)


# --- the tables as the site shows them -----------------------------------------------------------

#: short codes of the long likelihood-score names (spelled out in each table's legend)
SCORE_CODES = {"variational-dequantisation bound": "VD bound"}
#: the detection methods' short column heads
METHOD_HEADS = {"typicality_batch": "typicality (batch)"}


def _in_model_order(table: pd.DataFrame, dataset: str) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(model_order(table["model"]))}
    return (
        table.assign(_r=table["model"].map(rank))
        .sort_values([dataset, "_r"], kind="stable")
        .drop(columns="_r")
        .reset_index(drop=True)
    )


def conversion_codes(conversions: pd.Series | list[str]) -> dict[str, str]:
    """A short code (c1, c2, … in the order of the texts) for each OOD conversion other than "as is"; give it
    every conversion of the analysis (the metrics' ``ood_conversion``) so that every table uses the same codes."""
    codes, n = {}, 0
    for text in sorted(set(conversions)):
        if text == "as is":
            codes[text] = text
        else:
            n += 1
            codes[text] = f"c{n}"
    return codes


def _scores_and_conversions(
    table: pd.DataFrame, score: str, conversion: str | None, codes: dict[str, str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """``table`` with its score names and OOD conversions as short codes (``codes``, else
    :func:`conversion_codes` of its own), and the legend notes that spell them out."""
    scores = short_codes(table[score], SCORE_CODES)
    table = table.assign(**{score: table[score].map(scores)})
    notes = []
    legend = code_legend(scores)
    if legend:
        notes.append("Scores: " + legend)
    if conversion:
        known = codes or {}
        conversions = {**conversion_codes(table[conversion]), **{t: c for t, c in known.items()}}
        conversions = {t: conversions[t] for t in sorted(set(table[conversion]), key=lambda t: conversions[t])}
        table = table.assign(**{conversion: table[conversion].map(conversions)})
        legend = code_legend(conversions)
        if legend:
            notes.append("How each OOD set was brought to the model's input: " + legend)
    return table, notes


def auroc_shown(table: pd.DataFrame) -> Shown:
    """The AUROC table as the site shows it: "mean ± sd" on one line, scores as short codes, models in order."""
    table, notes = _scores_and_conversions(_in_model_order(table, "in-distribution"), "score", None)
    return Shown(
        readable(table),
        [
            "AUROC of the raw likelihood, mean ± sd over seeds (the mean alone for one seed); "
            "–: the in-distribution dataset itself.",
            *notes,
        ],
    )


def remedies_shown(table: pd.DataFrame, codes: dict[str, str] | None = None) -> Shown:
    """The remedies table as the site shows it: conversions (``codes``: :func:`conversion_codes`) and scores as
    short codes, short method heads."""
    table, notes = _scores_and_conversions(_in_model_order(table, "in-distribution"), "score", "OOD conversion", codes)
    table = table.rename(columns={**METHOD_HEADS, "OOD conversion": "conversion"})
    return Shown(readable(table), ["AUROC of each method, mean ± sd over seeds.", *notes])


def failures_shown(table: pd.DataFrame, codes: dict[str, str] | None = None) -> Shown:
    """The failures table as the site shows it: each pair of medians (test → OOD) in one cell, conversions
    (``codes``: :func:`conversion_codes`) and scores as short codes, the remedies' AUROC under short heads."""
    if table.empty:
        return Shown(readable(table), ["No case with AUROC below 0.5."])
    table, notes = _scores_and_conversions(table, "score", "OOD conversion", codes)
    out = table[
        ["in-distribution", "model", "score", "OOD set", "OOD conversion", "AUROC", "seeds below 0.5", "significant"]
    ].rename(columns={"OOD conversion": "conversion"})
    out = readable(out)
    pairs = [c[: -len(" in")] for c in table.columns if c.startswith("median ") and c.endswith(" in")]
    for pair in pairs:
        head = pair.replace("median ", "median ").replace(" bits/dim", "") + " bits/dim, test → OOD"
        out[head] = [f"{sig(a)} → {sig(b)}" for a, b in zip(table[f"{pair} in"], table[f"{pair} OOD"])]
    for column in [c for c in table.columns if c.startswith("AUROC ")]:
        out[METHOD_HEADS.get(column[len("AUROC ") :], column[len("AUROC ") :])] = table[column].map(sig)
    notes = [
        "*AUROC*: the raw likelihood's, mean ± sd over seeds; *significant*: every seed's one-sided "
        "Mann–Whitney test of AUROC < 0.5 below p = 0.01; medians of the NLL and of the compressed length, "
        "test images → OOD images; the last columns: each remedy's AUROC on the same case.",
        *notes,
    ]
    return Shown(out, notes)


def summary_shown(table: pd.DataFrame) -> Shown:
    """The summary table as the site shows it (3 significant figures)."""
    return Shown(readable(table), [])


def metrics_shown(table: pd.DataFrame, codes: dict[str, str] | None = None) -> Shown:
    """The long metrics table as the site shows it: AUROC and AUPR as "mean ± sd", counts and medians in pairs,
    scores and conversions (``codes``: :func:`conversion_codes`) as short codes; ``primary``, ``ood_kind`` and
    ``scored`` are the CSV's."""
    table = _in_model_order(table, "dataset")
    table, notes = _scores_and_conversions(table, "likelihood", "ood_conversion", codes)
    out = readable(table[["dataset", "model", "likelihood", "ood", "ood_conversion", "method"]]).rename(
        columns={"dataset": "in-distribution", "likelihood": "score", "ood": "OOD set", "ood_conversion": "conversion"}
    )
    out["AUROC"] = [mean_sd(m, s) for m, s in zip(table["auroc"], table["auroc_sd"])]
    out["AUPR (chance)"] = [
        DASH if not np.isfinite(m) else f"{mean_sd(m, s)} ({sig(c)})"
        for m, s, c in zip(table["aupr"], table["aupr_sd"], table["aupr_chance"])
    ]
    out["seeds < 0.5"] = [f"{int(b)} of {int(n)}" for b, n in zip(table["seeds_below_half"], table["seeds"])]
    out["max p"] = table["p_below_chance_max"].map(sig)
    out["images test / OOD"] = [f"{int(a):,} / {int(b):,}" for a, b in zip(table["n_in"], table["n_ood"])]
    out["non-finite train / test / OOD"] = [
        f"{int(a)} / {int(b)} / {int(c)}"
        for a, b, c in zip(table["nonfinite_train"], table["nonfinite_in"], table["nonfinite_ood"])
    ]
    out["Ĥ"] = table["entropy_bpd"].map(sig)
    for column in [c for c in table.columns if c.startswith("median_") and c.endswith("_in")]:
        stem = column[len("median_") : -len("_in")]
        head = "median " + stem.replace("_bpd", "").replace("bpd", "NLL").strip("_") + ", test → OOD"
        out[head] = [f"{sig(a)} → {sig(b)}" for a, b in zip(table[column], table[f"median_{stem}_ood"])]
    notes = [
        "AUROC and AUPR: mean ± sd over seeds (AUPR's chance level in brackets); *seeds < 0.5*: seeds with AUROC "
        "below 0.5; *max p*: the largest one-sided p of AUROC < 0.5 over seeds; images and non-finite NLLs "
        "summed over seeds; *Ĥ*: the mean training NLL (bits/dim); medians in bits/dim, test → OOD images.",
        *notes,
    ]
    return Shown(out, notes)


# --- figures -------------------------------------------------------------------------------


def auroc_chart(metrics: pd.DataFrame) -> alt.FacetChart:
    """Heatmap of AUROC (mean over seeds, primary likelihood score): model × OOD set, one panel per
    in-distribution dataset and method. Skipped OOD sets (no AUROC) are left out."""
    columns = ["dataset", "model", "likelihood", "ood", "method", "auroc", "auroc_sd"]
    prim = scored(metrics[metrics["primary"]])[columns].copy()
    prim["label"] = prim["auroc"].map(lambda v: f"{v:.2f}")
    order = ood_order(list(prim["ood"].unique()))
    methods = list(dict.fromkeys(prim["method"]))
    base = alt.Chart(prim).encode(
        x=alt.X("ood:N", title="OOD set", sort=order),
        y=alt.Y("model:N", title=None, sort=model_order(prim["model"])),
    )
    rect = base.mark_rect().encode(
        color=alt.Color("auroc:Q", title="AUROC", scale=alt.Scale(scheme="redblue", domain=[0, 1], domainMid=0.5)),
        tooltip=[
            "dataset",
            "model",
            "likelihood",
            "ood",
            "method",
            alt.Tooltip("auroc:Q", format=".3f"),
            alt.Tooltip("auroc_sd:Q", format=".3f"),
        ],
    )
    text = base.mark_text(fontSize=7).encode(
        text="label:N",
        color=alt.condition("abs(datum.auroc - 0.5) > 0.35", alt.value("white"), alt.value("black")),
    )
    low = prim.loc[prim["auroc"].idxmin()] if len(prim) else None
    worst = (
        f" The lowest AUROC is {low['auroc']:.2f}: {low['method']} for {low['model']} on {low['dataset']} against "
        f"{low['ood']}."
        if low is not None
        else ""
    )
    return (
        alt.layer(rect, text, data=prim)
        .properties(width=150, height=130)
        .facet(
            row=alt.Row("dataset:N", title="in-distribution"),
            column=alt.Column("method:N", title="method", sort=methods),
        )
        .properties(
            description=(
                "Heat maps of the AUROC of out-of-distribution detection, one row of panels per in-distribution "
                "dataset ("
                + ", ".join(sorted(prim["dataset"].unique()))
                + ") and one column per detection method ("
                + ", ".join(methods)
                + "); in each, one row per model and one column per OOD set, the AUROC written in the cell and "
                "coloured from "
                "red (0, the OOD set ranked as more in-distribution) through white (0.5, chance) to blue (1, detected)."
                + worst
            )
        )
    )


def bpd_quantiles(probe_paths: list[str | Path]) -> pd.DataFrame:
    """Per in-distribution × model × set: quantiles (10/25/50/75/90 %) of the primary NLL in bits/dim, pooled over
    seeds, and the count of non-finite values (kept out of the quantiles, counted here)."""
    rows = []
    pooled: dict[tuple[str, str, str, str], list[np.ndarray]] = {}
    for result in load_probes(list(probe_paths)):
        _check(result)
        a = result.arrays
        bpd = a["bits_per_dim"][-1]
        for i, (name, role) in enumerate(zip(a["sets"], a["set_roles"])):
            key = (result.dataset, result.model, str(name), str(role))
            pooled.setdefault(key, []).append(bpd[a["set_index"] == i])
    for (dataset, model, name, role), parts in pooled.items():
        values = np.concatenate(parts)
        finite = values[np.isfinite(values)]
        q = np.quantile(finite, [0.1, 0.25, 0.5, 0.75, 0.9]) if len(finite) else [np.nan] * 5
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "set": name,
                "role": role,
                "q10": q[0],
                "q25": q[1],
                "median": q[2],
                "q75": q[3],
                "q90": q[4],
                "n": len(values),
                "nonfinite": len(values) - len(finite),
            }
        )
    return pd.DataFrame(rows)


def bpd_chart(quantiles: pd.DataFrame, columns: int = 4) -> alt.FacetChart:
    """NLL (bits/dim, symlog axis) per set: 10–90 % whiskers, 25–75 % box, median tick; one panel per
    in-distribution dataset and model (independent axes). The train and in-distribution test sets come first."""
    q = quantiles[quantiles["nonfinite"] < quantiles["n"]].copy()
    q["panel"] = q["dataset"] + " · " + q["model"]
    order = ["train", "test", *ood_order([s for s in q["set"].unique() if s not in ("train", "test")])]
    x = alt.X("set:N", title=None, sort=order)
    scale = alt.Scale(type="symlog", zero=False)
    base = alt.Chart().encode(
        x=x,
        color=alt.Color(
            "role:N",
            title="set",
            scale=alt.Scale(domain=["train", "in", "ood"], range=["#888888", "#1f77b4", "#d62728"]),
        ),
    )
    whisker = base.mark_rule().encode(y=alt.Y("q10:Q", title="NLL (bits/dim)", scale=scale), y2="q90:Q")
    box = base.mark_bar(size=8).encode(
        y=alt.Y("q25:Q", scale=scale),
        y2="q75:Q",
        tooltip=["dataset", "model", "set", alt.Tooltip("median:Q", format=".3g"), "n", "nonfinite"],
    )
    tick = alt.Chart().mark_tick(color="black", thickness=1.5, size=10).encode(x=x, y=alt.Y("median:Q", scale=scale))
    rank = {m: i for i, m in enumerate(model_order(q["model"]))}
    panels = list(q.drop_duplicates("panel").assign(_r=q["model"].map(rank)).sort_values(["dataset", "_r"])["panel"])
    return (
        alt.layer(whisker, box, tick, data=q)
        .properties(width=150, height=100)
        .facet(
            facet=alt.Facet("panel:N", title=None, sort=panels),
            columns=columns,
        )
        .resolve_scale(y="independent")
        .properties(
            description=(
                "Box plots of the negative log-likelihood in bits/dim (symmetric-log axis) of every scored image "
                "set, one "
                "panel per in-distribution dataset and model ("
                + str(len(panels))
                + " panels): whiskers from the 10th to "
                "the 90th percentile, a box from the 25th to the 75th and a black tick at the median; the training "
                "images "
                "(grey) and the in-distribution test images (blue) first, then the out-of-distribution sets (red)."
            )
        )
    )


# --- numbers for the prose -----------------------------------------------------------------


def exact_vs_bound(exact: pd.Series, bound: pd.Series, confidence: float = 0.95) -> dict[str, Any]:
    """Whether the exact likelihoods detected better than the bounds: the difference of their mean AUROCs over
    cases (exact − bound), its Welch t-interval, and the answer as a sentence that says when it is within noise.
    The cases are (dataset, model, OOD set); they share OOD sets, so the interval is a rough one."""
    exact, bound = exact.astype(float).to_numpy(), bound.astype(float).to_numpy()
    difference = float(exact.mean() - bound.mean())
    if len(exact) > 1 and len(bound) > 1:
        var_e, var_b = exact.var(ddof=1) / len(exact), bound.var(ddof=1) / len(bound)
        se = math.sqrt(var_e + var_b)
        dof = (var_e + var_b) ** 2 / (var_e**2 / (len(exact) - 1) + var_b**2 / (len(bound) - 1)) if se > 0 else 1.0
        half = float(student_t.ppf(0.5 + confidence / 2, dof)) * se
    else:
        half = math.inf
    low, high = difference - half, difference + half
    interval = f"{100 * confidence:.0f}% interval {low:+.3f} to {high:+.3f}" if math.isfinite(half) else "no interval"
    if math.isfinite(half) and low > 0:
        verdict = (
            f"Yes: pooled over every case, the exact likelihoods' mean AUROC was higher by {difference:.3f} "
            f"({interval})."
        )
    elif math.isfinite(half) and high < 0:
        verdict = f"No, the opposite: the bounds' mean AUROC was higher by {-difference:.3f} ({interval})."
    else:
        verdict = (
            f"Not measurably: pooled over every case, the exact likelihoods' mean AUROC differed from the bounds' by "
            f"{difference:+.3f} ({interval}), within noise."
        )
    return {"difference": round(difference, 3), "low": round(low, 3), "high": round(high, 3), "verdict": verdict}


def variables(metrics: pd.DataFrame, settings: dict[str, Any], significance: float = 0.01) -> dict[str, Any]:
    """Counts of raw-likelihood failures, the worst case, what the remedies do, and the raw likelihood's AUROC
    per model (``by_model``) and pooled over exact likelihoods and bounds (``by_likelihood``), as plain numbers
    and strings; how each OOD dataset was converted per in-distribution dataset (``ood_conversions``), and the
    skipped cases (``skipped``, ``skipped_sets``: "dataset vs OOD set: reason"), left out of every other number."""
    everything = metrics
    metrics = scored(metrics)
    raw = metrics[metrics["method"] == "likelihood"]
    prim = metrics[metrics["primary"]]
    prim_raw = prim[prim["method"] == "likelihood"]
    fail_all = raw[raw["auroc"] < 0.5]
    fail = prim_raw[prim_raw["auroc"] < 0.5]
    worst = raw.loc[raw["auroc"].idxmin()]
    out: dict[str, Any] = {
        "runs": int(metrics.groupby(["dataset", "model"])["seeds"].max().sum()),
        "seeds": int(metrics["seeds"].max()),
        "cases": int(len(prim_raw)),
        "failures": int(len(fail)),
        "failures_significant": int((fail["p_below_chance_max"] < significance).sum()),
        "failures_any_score": int(len(fail_all)),
        "worst_auroc": round(float(worst["auroc"]), 3),
        "worst_dataset": str(worst["dataset"]),
        "worst_model": model_label(str(worst["model"])),
        "worst_ood": str(worst["ood"]),
        "worst_likelihood": str(worst["likelihood"]),
        "failures_by_ood": {str(k): int(v) for k, v in fail.groupby("ood").size().items()},
        "failures_by_dataset": {str(k): int(v) for k, v in fail.groupby("dataset").size().items()},
        "nonfinite_scores": int(prim_raw["nonfinite_in"].sum() + prim_raw["nonfinite_ood"].sum()),
        "mean_raw_auroc": {
            str(d): {str(o): round(float(g["auroc"].mean()), 3) for o, g in dg.groupby("ood")}
            for d, dg in prim_raw.groupby("dataset")
        },
        "typicality_batch_size": int(
            settings.get("typicality_batch", 0)
        ),  # the method's own results sit under "typicality_batch"
        "iwae_k": int(settings.get("iwae_k", 0)),
        "max_examples": int(settings.get("max_examples", 0)),
        "max_examples_slow": int(settings.get("max_examples_slow", 0)),
    }
    datasets = everything[everything["ood_kind"] == "dataset"]
    out["ood_conversions"] = {
        str(d): {str(o): str(c) for o, c in zip(g["ood"], g["ood_conversion"])}
        for d, g in datasets.groupby("dataset", sort=True)
    }
    skipped = everything[
        everything["primary"] & (everything["method"] == "likelihood") & ~everything.index.isin(metrics.index)
    ]
    out["skipped"] = int(len(skipped))
    out["skipped_sets"] = sorted(
        {
            f"{d} vs {o}: {c[len(SKIPPED) + 2 :]}"
            for d, o, c in zip(skipped["dataset"], skipped["ood"], skipped["ood_conversion"])
        }
    )

    def raw_summary(group: pd.DataFrame) -> dict[str, Any]:
        return {
            "mean_auroc": round(float(group["auroc"].mean()), 3),
            "cases": int(len(group)),
            "cases_below_half": int((group["auroc"] < 0.5).sum()),
            "worst_auroc": round(float(group["auroc"].min()), 3),
        }

    # the raw primary likelihood per model, and pooled by whether that likelihood is exact or a bound
    out["by_model"] = {str(model): raw_summary(group) for model, group in prim_raw.groupby("model", sort=True)}
    is_exact = prim_raw["likelihood"].astype(str).str.startswith("exact")
    out["by_likelihood"] = {
        name: raw_summary(prim_raw[mask]) for name, mask in (("exact", is_exact), ("bound", ~is_exact)) if mask.any()
    }
    if is_exact.any() and (~is_exact).any():
        out["exact_vs_bound"] = exact_vs_bound(prim_raw[is_exact]["auroc"], prim_raw[~is_exact]["auroc"])
    else:
        only = "exact likelihoods" if is_exact.any() else "bounds"
        out["exact_vs_bound"] = {"verdict": f"This build cannot say: it scored only {only}."}
    keys = ["dataset", "model", "ood"]
    for method, group in prim.groupby("method", sort=False):
        fixed = group.merge(fail[keys], on=keys)
        out[method] = {
            "mean_auroc": round(float(group["auroc"].mean()), 3),
            "cases_below_half": int((group["auroc"] < 0.5).sum()),
            "fixes": int((fixed["auroc"] > 0.5).sum()) if method != "likelihood" else 0,
            "worst_auroc": round(float(group["auroc"].min()), 3),
        }
    return out


def probe_paths(probes: list[str], results_dir: str | Path = "results") -> list[Path]:
    """The given probe files, or every anomaly probe under ``results_dir``."""
    paths = [Path(p) for p in probes] or sorted(Path(results_dir).glob("*/*/seed*/probes/anomaly.npz"))
    if not paths:
        raise ValueError(
            f"no anomaly probe files under {results_dir}/<dataset>/<model>/seed<N>/probes/; run the probe rule first"
        )
    return paths


def coverage(metrics_paths: list[str | Path], probes: list[Path], results_dir: str | Path = "results") -> str:
    """A line saying how many trained image runs have an anomaly probe, naming the ones that lack it."""
    paths = [Path(p) for p in metrics_paths] or sorted(Path(results_dir).glob("*/*/seed*/metrics.json"))
    runs = set()
    for path in paths:
        m = json.loads(Path(path).read_text(encoding="utf-8"))
        if m["dataset"] in IMAGE_DATASETS:
            runs.add((m["dataset"], m["model"], int(m["seed"])))
    probed = {
        (r.parent.parent.parent.parent.name, r.parent.parent.parent.name, int(r.parent.parent.name[4:])) for r in probes
    }
    lacking = sorted(runs - probed)
    line = f"{len(probed)} probed runs; {len(runs)} trained image runs have metrics"
    if lacking:
        line += "; without an anomaly probe: " + ", ".join(f"{d}/{m}/seed{s}" for d, m, s in lacking)
    return line
