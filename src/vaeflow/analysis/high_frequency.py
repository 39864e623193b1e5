"""The high-frequency analysis: how much fine detail each architecture's images carry.

Reads the ``high_frequency`` probe of every image run (:mod:`vaeflow.probes.high_frequency`, which
defines the spectra) and aggregates over training seeds.

* **High-frequency fraction** of an image set: ``Σ_images E_hf / Σ_images E``, the share of the
  (mean-removed) spectral energy at ``|f| > cutoff`` cycles/pixel, pooled over the set's images.
  Per (dataset, model) the estimate is the mean over seeds of each seed's fraction; its
  confidence interval is a percentile bootstrap over images, resampling the images of every seed
  independently (stratified by seed) and averaging the seeds' fractions again, so it measures the
  uncertainty from the finite number of images, not from training. The spread over seeds is
  reported beside it as an sd (empty with one seed).
* **Spectral distance** of a set to the test images:
  ``d = mean_{k=1…N/2} |log10 S̄_set(k) − log10 S̄_test(k)|``, where ``S̄(k)`` is the mean over the
  set's images of the radial power spectrum at ``k/N`` cycles/pixel (the DC bin ``k = 0`` is zero
  after mean removal and left out; powers are floored at ``1e-12`` before the log). Units:
  decades; 0 means identical mean spectra, 1 a factor 10 at every frequency on average. It is
  computed per seed and reported as mean ± sd over seeds.
* **Completion** (inpainting and 2x super-resolution by gradient ascent on the model's
  log-likelihood, against the mean-fill / bilinear baseline): PSNR over the missing pixels,
  ``10·log10(1/MSE)`` on the ``[0, 1]`` scale with the MSE averaged over the images of a run; the
  **HF energy ratio** ``Σ E_hf(completion)/Σ E_hf(truth)`` (below 1: too smooth, above 1: too
  much fine detail); the **relative HF error** ``Σ E_hf(completion − truth)/Σ E_hf(truth)``; and
  the objective gain (nats per image, the model's objective at the completion minus at the
  baseline it started from).
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Iterable
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from vaeflow.analysis.figures import (
    DASH,
    DATA_COLOUR,
    EDGE_PADDING,
    NBSP,
    Shown,
    mean_sd,
    model_color,
    model_label,
    model_order,
    readable,
    sig,
)
from vaeflow.analysis.runs import ProbeResult, load_probes

# The tables and figures this analysis writes (results/tables/<stem>.csv and .md, results/figures/<stem>.*),
# each with its caption, written only here: a title (its heading in Snakemake's report) and the caption
# (Quarto Markdown). The site and the report show it (vaeflow.analysis.captions).
TABLES = {
    "high_frequency_energy": {
        "title": "High-frequency energy of samples against the test images",
        "caption": (
            "High-frequency fraction (the share of the pooled power spectrum above the cutoff frequency) of "
            "each model's samples at $T = 1$, with its bootstrap interval in parentheses and the sd over "
            "seeds, against the test images (each dataset's first row, *test data*); the ratio of the two, "
            "the spectral distance to the test images (decades, mean ± sd over seeds), the ratio of total "
            "power, and the images scored (seeds × images per seed). A *non-finite* column, where present, "
            "counts samples that overflowed and were left out."
        ),
    },
    "high_frequency_vae": {
        "title": "Where VAE blur comes from",
        "caption": (
            "The VAEs' four image sets against the test images of the same dataset: samples $x \\sim p(x \\mid "
            "z)$ with $z \\sim p(z)$; decoder means $\\mu(z)$ with $z \\sim p(z)$; reconstructions as the "
            "decoder mean $\\mu(z)$ and as a sample $x' \\sim p(x \\mid z)$, with $z \\sim q(z \\mid x)$ for a "
            "test image $x$. Columns as in @tbl-high-frequency-energy."
        ),
    },
    "high_frequency_temperature": {
        "title": "High-frequency energy against sampling temperature",
        "caption": (
            "High-frequency fraction of the flows' samples at every sampling temperature $T$ (the VAEs are "
            "sampled at $T = 1$ only), with bootstrap interval, sd over seeds, ratio to the test images and "
            "spectral distance; columns as in @tbl-high-frequency-energy."
        ),
    },
    "high_frequency_completion": {
        "title": "Completion: does the likelihood restore the detail?",
        "caption": (
            "Inpainting of the image centre and 2× super-resolution by gradient ascent on each model's "
            "objective (the exact $\\log p$ of the flows, IWAE-$k$ for the VAEs), per dataset and task: PSNR "
            "over the missing pixels (dB, mean ± sd over seeds), the HF energy ratio of completion to truth, "
            "the relative HF error, and the objective's gain over the baseline the ascent started from (nats "
            "per image). The baseline row (mean fill, the training images' mean, for inpainting; bilinear for "
            "super-resolution; *seeds* 0) does not depend on training."
        ),
    },
    "high_frequency_cost": {
        "title": "What the high-frequency probe cost",
        "caption": (
            "Wall time of the high-frequency probe per model and dataset, mean over seeds: drawing the "
            "samples, and computing the spectra and the completions. The slow samplers (MAF's $D$ sequential "
            "passes, FFJORD's ODE solve, Flow++'s mixture CDFs inverted by bisection) have their own, "
            "possibly smaller, sample count: see *images per seed* in @tbl-high-frequency-energy."
        ),
    },
}
FIGURES = {
    "high_frequency_spectra": {
        "title": "Power spectra of samples against the test images",
        "caption": (
            "Mean radial power spectra (log-log) of the test images (black, thick) and of every model's "
            "samples at $T = 1$, one panel per dataset. A curve above the black one at the right-hand end "
            "carries more high-frequency energy than the data; below it, less."
        ),
    },
    "high_frequency_vae_spectra": {
        "title": "Power spectra of the VAEs' samples, means and reconstructions",
        "caption": (
            "Mean radial power spectra (log-log) of the VAEs' samples, decoder means and reconstructions "
            "against the test images (black), one row per VAE and one column per dataset."
        ),
    },
    "high_frequency_temperature": {
        "title": "High-frequency energy against sampling temperature",
        "caption": (
            "High-frequency fraction of each flow's samples against the sampling temperature $T$, with "
            "bootstrap intervals, one panel per dataset; the dashed black rule is the test images' fraction."
        ),
    },
    "high_frequency_samples": {
        "title": "Sample grids",
        "caption": (
            "Sample grids on MNIST (lowest seed of each model): the test images in the first row, then each "
            "model's samples at $T = 1$, and the VAEs' decoder means. Pixels are drawn as blocks, with no "
            "smoothing, so the fine detail is what is shown."
        ),
    },
    "high_frequency_completions": {
        "title": "Completions",
        "caption": (
            "Completions on MNIST (lowest seed): the true images, the observed pixels (missing ones in red), "
            "the baseline, then each model's completion; in every row the inpainting images come first, then "
            "the super-resolution ones."
        ),
    },
}

#: the notebook's settings (the rest of ``analyses.high_frequency`` is the probe's)
NOTEBOOK_SETTINGS = ("bootstrap", "confidence", "grid_dataset")

SET_LABELS = {
    "data": "test images",
    "samples": "samples",
    "decoder_mean": "decoder mean μ(z), z ~ p(z)",
    "reconstruction_mean": "reconstruction μ(z), z ~ q(z|x)",
    "reconstruction_sample": "reconstruction x' ~ p(x|z), z ~ q(z|x)",
}
BASELINES = {"inpaint": "mean fill", "superres": "bilinear"}  # mean fill: the training images' mean
POWER_FLOOR = 1e-12


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``bootstrap`` (int >= 10), ``confidence`` (in (0, 1)) and ``grid_dataset`` (str); ValueError otherwise."""
    missing = [key for key in NOTEBOOK_SETTINGS if key not in settings]
    if missing:
        raise ValueError(
            f"analyses.high_frequency lacks {', '.join(missing)} (the notebook's settings); add them to the config"
        )
    b, c, g = settings["bootstrap"], settings["confidence"], settings["grid_dataset"]
    if isinstance(b, bool) or not isinstance(b, int) or b < 10:
        raise ValueError(f"analyses.high_frequency.bootstrap must be an integer >= 10 (resamples), got {b!r}")
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < 1:
        raise ValueError(f"analyses.high_frequency.confidence must lie in (0, 1), e.g. 0.95, got {c!r}")
    if not isinstance(g, str):
        raise ValueError(f"analyses.high_frequency.grid_dataset must be a dataset name, got {g!r}")
    return {"bootstrap": int(b), "confidence": float(c), "grid_dataset": g}


def load(paths: Iterable[str]) -> list[ProbeResult]:
    """The probe files, sorted by (dataset, model, seed); anything but a high_frequency probe is an error."""
    results = load_probes(list(paths))
    if not results:
        raise ValueError(
            "no high_frequency probe files given; run the probe rule (results/*/*/seed*/probes/high_frequency.npz)"
        )
    wrong = [str(r.path) for r in results if r.probe != "high_frequency"]
    if wrong:
        raise ValueError(f"not high_frequency probe files: {', '.join(wrong)}")
    return results


# --- statistics ----------------------------------------------------------------------------------


def pooled_fraction(hf: np.ndarray, total: np.ndarray) -> float:
    """``Σ hf / Σ total``: the energy fraction of a set of images; ValueError when the set has no energy."""
    denominator = float(np.sum(total))
    if not denominator > 0:
        raise ValueError(
            "an image set has zero spectral energy (every image constant); its high-frequency fraction is undefined"
        )
    return float(np.sum(hf)) / denominator


def bootstrap_fraction(
    groups: list[tuple[np.ndarray, np.ndarray]],
    resamples: int,
    confidence: float,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean over groups (seeds) of their pooled fraction, and its percentile bootstrap interval.

    Each resample draws every group's images with replacement (as many as it has) and averages
    the groups' pooled fractions; the interval is the central ``confidence`` range of those means.
    """
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([pooled_fraction(hf, total) for hf, total in groups]))
    stats = np.zeros(resamples)
    for hf, total in groups:
        index = rng.integers(0, len(hf), size=(resamples, len(hf)))
        stats += hf[index].sum(axis=1) / total[index].sum(axis=1)
    stats /= len(groups)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return estimate, float(low), float(high)


def spectral_distance(radial_set: np.ndarray, radial_data: np.ndarray) -> float:
    """Mean absolute difference of ``log10`` mean radial spectra over the non-DC bins (decades)."""
    a = np.log10(np.maximum(np.asarray(radial_set, dtype=np.float64)[1:], POWER_FLOOR))
    b = np.log10(np.maximum(np.asarray(radial_data, dtype=np.float64)[1:], POWER_FLOOR))
    if a.shape != b.shape or a.size == 0:
        raise ValueError(
            "spectral_distance needs two radial spectra of the same length > 1, "
            f"got {radial_set.shape} and {radial_data.shape}"
        )
    return float(np.mean(np.abs(a - b)))


def psnr(mse: np.ndarray) -> float:
    """``10·log10(1/mean MSE)`` in dB for images on ``[0, 1]`` (inf for a perfect completion)."""
    m = float(np.mean(mse))
    return math.inf if m == 0 else 10.0 * math.log10(1.0 / m)


def _sd(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


# --- tidy frames from the probe files ------------------------------------------------------------


def image_sets(results: list[ProbeResult]) -> pd.DataFrame:
    """One row per (dataset, model, seed, image set): its per-image arrays and mean radial spectrum."""
    rows = []
    for r in results:
        a = r.arrays
        if "latent_kind" not in a:
            raise ValueError(
                f"{r.path} has no latent_kind: a high_frequency probe from before the models recorded their kind; "
                "rerun it (snakemake --forcerun probe_high_frequency_anomaly_latents, or delete the file)"
            )
        for i, (name, temperature) in enumerate(zip(a["set_name"], a["set_temperature"])):
            sel = a["image_set"] == i
            rows.append(
                {
                    "dataset": r.dataset,
                    "model": r.model,
                    # the probe's record of the model's kind (vaeflow.models: latent_kind), not a list of names
                    "vae": str(a["latent_kind"]) == "vae",
                    "seed": r.seed,
                    "set": str(name),
                    "temperature": float(temperature),
                    "images": int(sel.sum()),
                    "requested": int(a["set_requested"][i]),
                    "nonfinite": int(a["set_nonfinite"][i]),
                    "hf": a["hf_power"][sel],
                    "total": a["total_power"][sel],
                    "radial": a["radial"][sel].mean(axis=0),
                    "frequency": a["radial_frequency"],
                    "cutoff": float(a["cutoff"]),
                }
            )
    return pd.DataFrame(rows)


def _data_sets(sets: pd.DataFrame) -> dict[str, pd.Series]:
    """The test-image set of each dataset (identical in every run of it; the first is taken)."""
    return {d: g.iloc[0] for d, g in sets[sets["set"] == "data"].groupby("dataset")}


def _summaries(groups: pd.DataFrame, data: pd.Series, settings: dict[str, Any]) -> dict[str, Any]:
    """HF fraction (mean over seeds, CI, sd), ratio to data and spectral distance of one set across seeds."""
    pairs = list(zip(groups["hf"], groups["total"]))
    estimate, low, high = bootstrap_fraction(pairs, settings["bootstrap"], settings["confidence"])
    per_seed = [pooled_fraction(hf, total) for hf, total in pairs]
    data_fraction = pooled_fraction(data["hf"], data["total"])
    distances = [spectral_distance(radial, data["radial"]) for radial in groups["radial"]]
    power = [float(np.mean(total)) / float(np.mean(data["total"])) for total in groups["total"]]
    return {
        "seeds": int(groups["seed"].nunique()),
        "images per seed": int(groups["images"].min()),
        "non-finite dropped": int(groups["nonfinite"].sum()),
        "hf fraction": estimate,
        "hf ci low": low,
        "hf ci high": high,
        "hf sd over seeds": _sd(per_seed),
        "hf ratio to data": estimate / data_fraction,
        "spectral distance": float(np.mean(distances)),
        "spectral distance sd": _sd(distances),
        "power ratio to data": float(np.mean(power)),
    }


def _data_row(dataset: str, data: pd.Series, settings: dict[str, Any]) -> dict[str, Any]:
    estimate, low, high = bootstrap_fraction(
        [(data["hf"], data["total"])], settings["bootstrap"], settings["confidence"]
    )
    return {
        "dataset": dataset,
        "model": "test data",
        "seeds": 0,
        "images per seed": int(data["images"]),
        "non-finite dropped": 0,
        "hf fraction": estimate,
        "hf ci low": low,
        "hf ci high": high,
        "hf sd over seeds": math.nan,
        "hf ratio to data": 1.0,
        "spectral distance": 0.0,
        "spectral distance sd": math.nan,
        "power ratio to data": 1.0,
    }


def energy_table(sets: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """Samples at T = 1 of every model against the test images: HF fraction with CI, ratio, spectral distance.

    The first row of each dataset is the test images themselves (``seeds`` 0); the two sd columns
    are empty there and wherever a model has one seed."""
    data = _data_sets(sets)
    rows = []
    for dataset in sorted(data):
        rows.append(_data_row(dataset, data[dataset], settings))
        chosen = sets[(sets["dataset"] == dataset) & (sets["set"] == "samples") & (sets["temperature"] == 1.0)]
        for model, group in chosen.groupby("model", sort=True):
            rows.append({"dataset": dataset, "model": model, **_summaries(group, data[dataset], settings)})
    return _rounded(pd.DataFrame(rows))


def vae_table(sets: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """VAEs: samples, decoder means and reconstructions (location and sample) against the test images."""
    data = _data_sets(sets)
    rows = []
    kinds = ("samples", "decoder_mean", "reconstruction_mean", "reconstruction_sample")
    chosen = sets[sets["vae"] & sets["set"].isin(kinds)]
    for (dataset, model), group in chosen.groupby(["dataset", "model"], sort=True):
        for kind in kinds:
            part = group[group["set"] == kind]
            if len(part):
                rows.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "images": SET_LABELS[kind],
                        **_summaries(part, data[dataset], settings),
                    }
                )
    return _rounded(pd.DataFrame(rows, columns=["dataset", "model", "images"] + list(_EMPTY_SUMMARY)))


def temperature_table(sets: pd.DataFrame, settings: dict[str, Any]) -> pd.DataFrame:
    """HF fraction of flow samples at every temperature (the VAEs are sampled at T = 1 only)."""
    data = _data_sets(sets)
    chosen = sets[(sets["set"] == "samples") & ~sets["vae"]]
    rows = []
    for (dataset, model, temperature), group in chosen.groupby(["dataset", "model", "temperature"], sort=True):
        s = _summaries(group, data[dataset], settings)
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "temperature": temperature,
                **{
                    k: s[k]
                    for k in (
                        "seeds",
                        "images per seed",
                        "non-finite dropped",
                        "hf fraction",
                        "hf ci low",
                        "hf ci high",
                        "hf sd over seeds",
                        "hf ratio to data",
                        "spectral distance",
                    )
                },
            }
        )
    return _rounded(pd.DataFrame(rows))


_EMPTY_SUMMARY = dict.fromkeys(
    (
        "seeds",
        "images per seed",
        "non-finite dropped",
        "hf fraction",
        "hf ci low",
        "hf ci high",
        "hf sd over seeds",
        "hf ratio to data",
        "spectral distance",
        "spectral distance sd",
        "power ratio to data",
    )
)


def _rounded(df: pd.DataFrame) -> pd.DataFrame:
    floats = df.select_dtypes("float").columns
    df[floats] = df[floats].round(4)
    return df.reset_index(drop=True)


def completion_frame(results: list[ProbeResult]) -> pd.DataFrame:
    """One row per (dataset, model, seed, task, method) of the runs that completed images."""
    rows = []
    for r in results:
        a = r.arrays
        for q, task in enumerate(a["task_name"]):
            truth_hf = float(a["truth_hf_power"].sum())
            for m, method in enumerate(a["completion_method"]):
                rows.append(
                    {
                        "dataset": r.dataset,
                        "model": r.model,
                        "seed": r.seed,
                        "task": str(task),
                        "method": str(method),
                        "objective": str(a["objective_name"]),
                        "psnr": psnr(a["completion_mse"][q, m]),
                        "hf_ratio": float(a["completion_hf_power"][q, m].sum()) / truth_hf,
                        "hf_error": float(a["completion_residual_hf_power"][q, m].sum()) / truth_hf,
                        "objective_value": float(a["completion_objective"][q, m].mean()),
                        "images": int(a["completion_mse"].shape[2]),
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "dataset",
            "model",
            "seed",
            "task",
            "method",
            "objective",
            "psnr",
            "hf_ratio",
            "hf_error",
            "objective_value",
            "images",
        ],
    )


def completion_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and task: the baseline once, then every model (mean ± sd over seeds as columns).

    The baseline does not depend on training (same images, same training mean): its row has
    ``seeds`` 0 and an empty ``psnr sd``; so has every model's ``psnr sd`` with one seed."""
    rows = []
    for (dataset, task), group in frame.groupby(["dataset", "task"], sort=True):
        base = group[group["method"] == "baseline"]
        first = base[(base["model"] == base["model"].iloc[0]) & (base["seed"] == base["seed"].iloc[0])].iloc[0]
        kind = task.split("_")[0]
        rows.append(
            {
                "dataset": dataset,
                "task": task,
                "method": BASELINES.get(kind, "baseline"),
                "objective": "–",
                "seeds": 0,
                "images": int(first["images"]),
                "psnr (dB)": first["psnr"],
                "psnr sd": math.nan,
                "hf energy ratio": first["hf_ratio"],
                "relative hf error": first["hf_error"],
                "objective gain (nats)": 0.0,
            }
        )
        for model, part in group.groupby("model", sort=True):
            done, start = part[part["method"] == "model"], part[part["method"] == "baseline"]
            gain = done.set_index("seed")["objective_value"] - start.set_index("seed")["objective_value"]
            rows.append(
                {
                    "dataset": dataset,
                    "task": task,
                    "method": model,
                    "objective": done["objective"].iloc[0],
                    "seeds": int(done["seed"].nunique()),
                    "images": int(done["images"].min()),
                    "psnr (dB)": float(done["psnr"].mean()),
                    "psnr sd": _sd(list(done["psnr"])),
                    "hf energy ratio": float(done["hf_ratio"].mean()),
                    "relative hf error": float(done["hf_error"].mean()),
                    "objective gain (nats)": float(gain.mean()),
                }
            )
    return _rounded(
        pd.DataFrame(
            rows,
            columns=[
                "dataset",
                "task",
                "method",
                "objective",
                "seeds",
                "images",
                "psnr (dB)",
                "psnr sd",
                "hf energy ratio",
                "relative hf error",
                "objective gain (nats)",
            ],
        )
    )


def cost_table(results: list[ProbeResult]) -> pd.DataFrame:
    """Wall time of the probe per run (mean over seeds): sampling, and spectra plus completions."""
    rows = [
        {
            "dataset": r.dataset,
            "model": r.model,
            "seed": r.seed,
            "sampling (s)": float(r.arrays["seconds"][0]),
            "spectra and completions (s)": float(r.arrays["seconds"][1]),
        }
        for r in results
    ]
    df = (
        pd.DataFrame(rows)
        .groupby(["dataset", "model"], as_index=False)
        .agg({"seed": "nunique", "sampling (s)": "mean", "spectra and completions (s)": "mean"})
        .rename(columns={"seed": "seeds"})
    )
    return _rounded(df.round(2))


# --- the tables as the site shows them -----------------------------------------------------------


def _interval(estimate: float, low: float, high: float) -> str:
    """``"0.322 (0.308–0.332)"``, never broken across lines (a no-break space, word joiners round the dash)."""
    return DASH if not np.isfinite(estimate) else f"{sig(estimate)}{NBSP}({sig(low)}\u2060–\u2060{sig(high)})"


#: the VAEs' image sets in few words, for the site's table (its legend spells them out, :data:`SET_LABELS`)
SET_SHORT = {
    "samples": "samples",
    "decoder_mean": "decoder mean",
    "reconstruction_mean": "recon. mean",
    "reconstruction_sample": "recon. sample",
}


def _in_model_order(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``table`` sorted by dataset, then model in the site's order (the test images first), stably otherwise."""
    rank = {m: i for i, m in enumerate(["test data", *model_order(m for m in table["model"] if m != "test data")])}
    return table.assign(_r=table["model"].map(rank)).sort_values([*keys[:1], "_r"], kind="stable").drop(columns="_r")


def _summary_shown(table: pd.DataFrame, keys: list[str], confidence: float) -> pd.DataFrame:
    """The summary columns of :func:`_summaries` compactly: the fraction with its interval in one cell, the seed
    sd, the ratio to the test images, the spectral distance as "mean ± sd", the power ratio, and the images as
    "seeds × images per seed" (the test images: their count)."""
    out = readable(table[keys].reset_index(drop=True))
    t = table.reset_index(drop=True)
    out[f"HF fraction ({confidence:.0%} CI)"] = [
        _interval(*v) for v in zip(t["hf fraction"], t["hf ci low"], t["hf ci high"])
    ]
    out["seed sd"] = t["hf sd over seeds"].map(sig)
    out["ratio to data"] = t["hf ratio to data"].map(sig)
    if "spectral distance" in t:
        sds = t["spectral distance sd"] if "spectral distance sd" in t else [math.nan] * len(t)
        out["spectral distance"] = [mean_sd(m, s) for m, s in zip(t["spectral distance"], sds)]
    if "power ratio to data" in t:
        out["power ratio"] = t["power ratio to data"].map(sig)
    out["images"] = [
        f"{int(n):,}" if seeds == 0 else f"{int(seeds)} × {int(n):,}"
        for seeds, n in zip(t["seeds"], t["images per seed"])
    ]
    if t["non-finite dropped"].any():
        out["non-finite"] = t["non-finite dropped"].map(lambda v: f"{int(v):,}")
    return out


def _summary_notes(table: pd.DataFrame, confidence: float, cutoff: float | None) -> list[str]:
    above = f"above {cutoff:g} cycles/pixel" if cutoff is not None else "above the cutoff"
    notes = [
        f"*HF fraction*: the share of spectral energy {above}, mean over seeds, with its {confidence:.0%} "
        "bootstrap interval over images; *seed sd*: its sd over seeds (– with one seed); *ratio to data*: "
        "the fraction over the test images'; *spectral distance*: to the test images' mean spectrum, in "
        "decades, mean ± sd over seeds; *power ratio*: total power over the test images'; *images*: seeds × "
        "images per seed."
    ]
    if not table["non-finite dropped"].any():
        notes.append("No sample was non-finite.")
    else:
        notes.append("*non-finite*: samples that overflowed and were left out.")
    return notes


def energy_shown(table: pd.DataFrame, settings: dict[str, Any], cutoff: float | None = None) -> Shown:
    """The energy table as the site shows it (:func:`_summary_shown`), the test images first per dataset."""
    table = _in_model_order(table, ["dataset"])
    return Shown(
        _summary_shown(table, ["dataset", "model"], settings["confidence"]),
        _summary_notes(table, settings["confidence"], cutoff),
    )


def vae_shown(table: pd.DataFrame, settings: dict[str, Any], cutoff: float | None = None) -> Shown:
    """The VAE table as the site shows it (:func:`_summary_shown`)."""
    short = {SET_LABELS[kind]: text for kind, text in SET_SHORT.items()}
    table = _in_model_order(table, ["dataset"])
    table = table.assign(images=table["images"].map(lambda label: short.get(label, label)))
    table = table.rename(columns={"images": "image set"})  # the set's name; "images" counts them here
    shown = _summary_shown(table, ["dataset", "model", "image set"], settings["confidence"])
    sets = "; ".join(
        f"*{text}*: {SET_LABELS[kind]}" for kind, text in SET_SHORT.items() if text in set(table["image set"])
    )
    return Shown(shown, [*_summary_notes(table, settings["confidence"], cutoff), f"Image sets: {sets}."])


def temperature_shown(table: pd.DataFrame, settings: dict[str, Any], cutoff: float | None = None) -> Shown:
    """The temperature table as the site shows it (:func:`_summary_shown`), models in the site's order."""
    table = _in_model_order(table.sort_values(["dataset", "temperature"], kind="stable"), ["dataset"])
    shown = _summary_shown(table, ["dataset", "model", "temperature"], settings["confidence"])
    return Shown(shown.rename(columns={"temperature": "T"}), _summary_notes(table, settings["confidence"], cutoff))


def completion_shown(table: pd.DataFrame) -> Shown:
    """The completion table as the site shows it: PSNR as "mean ± sd" on one line, 3 significant figures."""
    shown = readable(table.drop(columns=["psnr (dB)", "psnr sd"]))
    shown.insert(6, "PSNR (dB)", [mean_sd(m, s) for m, s in zip(table["psnr (dB)"], table["psnr sd"])])
    return Shown(
        shown,
        [
            "*PSNR*: over the missing pixels, mean ± sd over seeds; *hf energy ratio*: the completion's high-frequency "
            "energy over the truth's (below 1: too smooth); *relative hf error*: the high-frequency energy of the "
            "error over the truth's; *objective gain*: the model's objective at the completion minus at the baseline "
            "it started from, nats per image. A baseline row (*seeds* 0) does not depend on training."
        ],
    )


def cost_shown(table: pd.DataFrame) -> Shown:
    """The probe's wall-time table as the site shows it."""
    return Shown(readable(table), ["Seconds per run, mean over seeds."])


# --- figures -------------------------------------------------------------------------------------


def _spectrum_rows(sets: pd.DataFrame) -> pd.DataFrame:
    """Mean radial spectra (mean over seeds), long form, without the DC bin."""
    rows = []
    for (dataset, model, vae, name, temperature), group in sets.groupby(
        ["dataset", "model", "vae", "set", "temperature"], dropna=False
    ):
        radial = np.mean(np.stack(list(group["radial"])), axis=0)
        frequency = group["frequency"].iloc[0]
        for f, p in zip(frequency[1:], radial[1:]):
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "vae": vae,
                    "set": name,
                    "temperature": temperature,
                    "frequency": float(f),
                    "power": float(max(p, POWER_FLOOR)),
                }
            )
    return pd.DataFrame(rows)


def _spectrum_axes() -> dict[str, alt.X | alt.Y]:
    """Log-log axes of a radial power spectrum, set by the data (no nice rounding) and padded at both ends."""
    return {
        "x": alt.X(
            "frequency:Q",
            scale=alt.Scale(type="log", nice=False, padding=EDGE_PADDING),
            title="spatial frequency (cycles/pixel)",
        ),
        "y": alt.Y("power:Q", scale=alt.Scale(type="log", nice=False, padding=EDGE_PADDING), title="mean radial power"),
    }


def spectra_chart(sets: pd.DataFrame) -> alt.FacetChart:
    """Log-log mean radial power spectra of T = 1 samples per model, the test images in black."""
    rows = _spectrum_rows(sets)
    samples = rows[(rows["set"] == "samples") & (rows["temperature"] == 1.0)]
    data = rows[rows["set"] == "data"].drop_duplicates(["dataset", "frequency"]).assign(model="test data")
    both = pd.concat([data, samples], ignore_index=True)
    chart = (
        alt.Chart(both)
        .mark_line(point=True)
        .encode(
            **_spectrum_axes(),
            color=model_color(samples["model"], title="images", first={"test data": DATA_COLOUR}),
            strokeWidth=alt.condition(alt.datum.model == "test data", alt.value(3), alt.value(1.5)),
            tooltip=[
                "dataset",
                "model",
                alt.Tooltip("frequency:Q", format=".3f"),
                alt.Tooltip("power:Q", format=".3g"),
            ],
        )
        .properties(width=170, height=180)
    )  # three panels and the legend within the text column
    datasets = sorted(both["dataset"].unique())
    return (
        chart.facet(column=alt.Column("dataset:N", title=None))
        .resolve_scale(x="independent", y="independent")
        .properties(
            description=(
                "Log-log line charts of the mean radial power spectrum against spatial frequency, "
                "one panel per dataset ("
                + ", ".join(datasets)
                + "): the test images as a thick black line and each model's samples at "
                "temperature 1 in its colour. A line above the black one at high frequencies carries more fine detail "
                "than the data."
            )
        )
    )


#: colours of the VAEs' image sets (not models: one VAE per row of panels)
_SET_PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#b279a2"]


def vae_spectra_chart(sets: pd.DataFrame) -> alt.FacetChart:
    """VAEs: spectra of samples, decoder means and reconstructions against the test images."""
    rows = _spectrum_rows(sets)
    vae = rows[rows["vae"] & (rows["set"] != "data")]
    data = rows[rows["set"] == "data"].drop_duplicates(["dataset", "frequency"])
    data = pd.concat([data.assign(model=m) for m in sorted(vae["model"].unique())], ignore_index=True)
    both = pd.concat([data, vae], ignore_index=True)
    both["images"] = both["set"].map(SET_LABELS)
    domain = [SET_LABELS[k] for k in SET_LABELS]
    chart = (
        alt.Chart(both)
        .mark_line(point=True)
        .encode(
            **_spectrum_axes(),
            color=alt.Color(
                "images:N", scale=alt.Scale(domain=domain, range=[DATA_COLOUR] + _SET_PALETTE), title="images"
            ),
            tooltip=[
                "dataset",
                "model",
                "images",
                alt.Tooltip("frequency:Q", format=".3f"),
                alt.Tooltip("power:Q", format=".3g"),
            ],
        )
        .properties(width=170, height=160)
    )
    models = model_order(vae["model"])
    return (
        chart.facet(row=alt.Row("model:N", title=None, sort=models), column=alt.Column("dataset:N", title=None))
        .resolve_scale(x="independent", y="independent")
        .properties(
            description=(
                "Log-log line charts of mean radial power spectra against spatial frequency for the VAEs ("
                + ", ".join(models)
                + "), one row of panels per VAE and one column per dataset: the test images in black, "
                "and the VAE's samples, decoder means and reconstructions (mean and sample) in four colours."
            )
        )
    )


def temperature_chart(table: pd.DataFrame, energy: pd.DataFrame) -> alt.FacetChart:
    """HF fraction of flow samples against temperature, with bootstrap CIs; the test images as a rule."""
    lines = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=alt.X("temperature:Q", title="sampling temperature T", scale=alt.Scale(zero=False, padding=EDGE_PADDING)),
            y=alt.Y(
                "hf fraction:Q",
                title="fraction of energy above the cutoff",
                scale=alt.Scale(zero=False, padding=EDGE_PADDING),
            ),
            color=model_color(table["model"]),
            tooltip=["dataset", "model", "temperature", "hf fraction", "hf ci low", "hf ci high", "non-finite dropped"],
        )
    )
    bars = (
        alt.Chart()
        .mark_errorbar()
        .encode(
            x="temperature:Q",
            y=alt.Y("hf ci low:Q", title="", scale=alt.Scale(zero=False, padding=EDGE_PADDING)),
            y2="hf ci high:Q",
            color=model_color(table["model"]),
        )
    )
    data = energy[energy["model"] == "test data"][["dataset", "hf fraction"]].rename(columns={"hf fraction": "data"})
    merged = table.merge(data, on="dataset", how="left")
    rule = alt.Chart().mark_rule(color=DATA_COLOUR, strokeDash=[4, 3]).encode(y="mean(data):Q")
    datasets = sorted(merged["dataset"].unique())
    return (
        alt.layer(bars, lines, rule, data=merged)
        .properties(width=220, height=180)
        .facet(column=alt.Column("dataset:N", title=None))
        .resolve_scale(y="independent")
        .properties(
            description=(
                "Line charts of the fraction of spectral energy above the cutoff in the flows' samples against the "
                "sampling temperature, with bootstrap interval bars, one panel per dataset ("
                + ", ".join(datasets)
                + "), one colour per model; a dashed black line marks the test images' fraction."
            )
        )
    )


MISSING_RGB = (214, 39, 40)


def png_bytes(rgb: np.ndarray) -> bytes:
    """A minimal 8-bit RGB PNG (zlib-compressed scanlines, filter 0) of an ``(H, W, 3)`` uint8 array."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"png_bytes expects an (H, W, 3) array, got shape {a.shape}")
    height, width = a.shape[:2]
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def to_rgb(image: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Levels ``0…K-1`` of a grey ``(H, W)`` or ``(1, H, W)`` image, or an RGB ``(3, H, W)`` one, as ``(H, W, 3)``
    uint8 colour ``round(255·x/(K-1))`` (grey repeated in R, G, B; colour kept), and the ``(H, W)`` mask of
    pixels that are NaN in any channel (missing)."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = np.moveaxis(x, 0, -1)
    elif x.ndim == 2:
        x = x[..., None]
    else:
        raise ValueError(
            f"high-frequency figures draw (H, W) or (1, H, W) grey and (3, H, W) RGB images, got shape "
            f"{x.shape}; rerun the high_frequency probe if its file predates this layout"
        )
    missing = ~np.isfinite(x).all(axis=2)
    scaled = np.clip(np.nan_to_num(x / (levels - 1)), 0, 1)
    rgb = np.rint(255 * np.broadcast_to(scaled, (*scaled.shape[:2], 3))).astype(np.uint8)
    return rgb, missing


def image_url(image: np.ndarray, levels: int, zoom: int) -> str:
    """A grey ``(H, W)`` / ``(1, H, W)`` or RGB ``(3, H, W)`` image of ``levels`` levels as a PNG data URL, in
    colour where it has three channels (:func:`to_rgb`), each pixel a ``zoom x zoom`` block (no smoothing
    anywhere: the fine detail is the subject); NaN pixels (missing) in red, :data:`MISSING_RGB`."""
    rgb, missing = to_rgb(image, levels)
    rgb[missing] = MISSING_RGB
    rgb = np.repeat(np.repeat(rgb, zoom, axis=0), zoom, axis=1)
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def _grid_chart(rows: list[tuple[str, list[np.ndarray], int]], zoom: int = 4, gap: int = 4) -> alt.FacetChart:
    """Rows of images (label, images ``(H, W)`` or ``(C, H, W)``, levels) as one facet row each, side by side."""
    records = []
    height = width = 0
    for label, images, levels in rows:
        for n, image in enumerate(images):
            height, width = image.shape[-2] * zoom, image.shape[-1] * zoom
            records.append({"row": label, "px": n * (width + gap), "url": image_url(image, levels, zoom)})
    if not records:
        raise ValueError("no images to show in the grid")
    total = max(r["px"] for r in records) + width
    chart = (
        alt.Chart(alt.Data(values=records))
        .mark_image(
            width=width,
            height=height,
            align="left",
            baseline="top",
            smooth=False,
        )
        .encode(
            x=alt.X("px:Q", scale=alt.Scale(domain=[0, total], nice=False, zero=True), axis=None),
            y=alt.value(0),
            url="url:N",
        )
        .properties(width=total, height=height)
    )
    labels = [label for label, *_ in rows]
    return (
        chart.facet(
            row=alt.Row(
                "row:N", sort=labels, title=None, header=alt.Header(labelAngle=0, labelAlign="left", labelLimit=300)
            ),
        )
        .configure_view(stroke=None)
        .configure_facet(spacing=6)
    )


def samples_chart(results: list[ProbeResult], dataset: str) -> alt.FacetChart:
    """Sample grids of one dataset: test images, then each model's T = 1 samples (and VAE decoder means); lowest seed.

    The probe keeps every channel of the grid, so an RGB dataset is drawn in colour (probe files of before that
    change hold ``(G, H, W)`` grey grids, drawn as before)."""
    chosen = [r for r in results if r.dataset == dataset]
    if not chosen:
        raise ValueError(
            f"no high_frequency probe of dataset {dataset!r} for the sample grid; "
            "set analyses.high_frequency.grid_dataset "
            f"to one of {', '.join(sorted({r.dataset for r in results}))}"
        )
    rows: dict[str, tuple[str, list[np.ndarray], int]] = {}
    for r in sorted(chosen, key=lambda r: (r.seed, r.model)):
        a = r.arrays
        levels = int(a["levels"])
        for index in np.unique(a["grid_set"]):
            name = str(a["set_name"][index])
            label = {"data": "test data", "samples": r.model}.get(
                name, f"{r.model} ({SET_LABELS.get(name, name).split(',')[0]})"
            )
            if label not in rows:
                rows[label] = (label, list(a["grid"][a["grid_set"] == index]), levels)
    order = ["test data"] + sorted(label for label in rows if label != "test data")
    return _grid_chart([rows[label] for label in order]).properties(
        description=(
            f"Grids of images from {dataset}, drawn pixel by pixel without smoothing, one row each: "
            + ", ".join(order)
            + ". The first row holds test images, the others each model's samples at temperature 1 "
            "(and the VAEs' decoder means)."
        )
    )


def completions_chart(results: list[ProbeResult], dataset: str) -> alt.FacetChart:
    """Completions of the first test images of one dataset (lowest seed): truth, observed pixels, baselines, models.

    Each row holds the inpainting images, then the super-resolution ones; RGB images in colour, missing pixels
    (NaN in every channel: the masks hide whole pixels) in red."""
    chosen = [r for r in results if r.dataset == dataset and len(r.arrays["task_name"])]
    if not chosen:
        raise ValueError(f"no completion runs of dataset {dataset!r}; check completion_models and grid_dataset")
    first = chosen[0].arrays
    levels = int(first["levels"])
    truth = list(first["truth_shown"])
    tasks = range(len(first["task_name"]))
    observed = [np.where(first["task_missing"][q], np.nan, t) for q in tasks for t in truth]
    rows = [
        ("truth", truth * len(tasks), levels),
        ("observed (red: missing)", observed, levels),
        ("baseline (mean fill | bilinear)", [im for q in tasks for im in first["completion_shown"][q, 0]], levels),
    ]
    seen = set()
    for r in sorted(chosen, key=lambda r: (r.seed, r.model)):
        if r.model not in seen:
            seen.add(r.model)
            rows.append((r.model, [im for q in tasks for im in r.arrays["completion_shown"][q, 1]], levels))
    tasks_named = " and ".join(str(t) for t in first["task_name"])
    return _grid_chart(rows, zoom=5).properties(
        description=(
            f"Grids of image completions on {dataset} ({tasks_named}), one row each: the true images, the observed "
            "pixels with the missing ones in red, the baseline completion, then each model's completion ("
            + ", ".join(sorted(seen))
            + "); in every row the inpainting images come first, then the super-resolution ones."
        )
    )


# --- variables -----------------------------------------------------------------------------------


def _key(temperature: float) -> str:
    return f"t{int(round(temperature * 100)):03d}"


def variables(
    energy: pd.DataFrame,
    vae: pd.DataFrame,
    temperature: pd.DataFrame,
    completion: pd.DataFrame,
    settings: dict[str, Any],
    cutoff: float,
) -> dict[str, Any]:
    """Numbers the prose quotes, keyed by dataset and model (floats rounded to 3 significant places)."""

    def r(x: float) -> float | str:
        return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(f"{x:.3g}")

    out: dict[str, Any] = {
        "cutoff": float(cutoff),
        "bootstrap": settings["bootstrap"],
        "confidence": settings["confidence"],
    }
    for row in energy.to_dict("records"):
        d = out.setdefault(row["dataset"], {})
        if row["model"] == "test data":
            d["data_hf_fraction"] = r(row["hf fraction"])
            continue
        d[row["model"]] = {
            "hf_fraction": r(row["hf fraction"]),
            "hf_ci_low": r(row["hf ci low"]),
            "hf_ci_high": r(row["hf ci high"]),
            "hf_ratio": r(row["hf ratio to data"]),
            "spectral_distance": r(row["spectral distance"]),
            "nonfinite": int(row["non-finite dropped"]),
            "samples": int(row["images per seed"]),
        }
    kinds = {v: k for k, v in SET_LABELS.items()}
    for row in vae.to_dict("records"):
        entry = out.setdefault(row["dataset"], {}).setdefault(row["model"], {})
        kind = kinds[row["images"]]
        if kind != "samples":
            entry[f"{kind}_hf_ratio"] = r(row["hf ratio to data"])
            entry[f"{kind}_spectral_distance"] = r(row["spectral distance"])
    for row in temperature.to_dict("records"):
        entry = out.setdefault(row["dataset"], {}).setdefault(row["model"], {})
        entry[f"hf_fraction_{_key(row['temperature'])}"] = r(row["hf fraction"])
    for dataset in sorted(set(energy["dataset"])):
        data = energy[(energy["dataset"] == dataset) & (energy["model"] == "test data")].iloc[0]
        verdicts = {}
        for row in vae[vae["dataset"] == dataset].to_dict("records"):
            kind = kinds[row["images"]]
            if kind in ("samples", "decoder_mean"):
                verdicts.setdefault(kind, []).append(f"{row['model']}: {_verdict(row, data)}")
        for kind, texts in verdicts.items():
            out[dataset][f"vae_{kind}_less_hf_than_data"] = ", ".join(texts)
    for row in completion.to_dict("records"):
        entry = out.setdefault(row["dataset"], {}).setdefault("completion", {}).setdefault(row["task"], {})
        name = "baseline" if row["seeds"] == 0 else row["method"]
        entry[name] = {
            "psnr_db": r(row["psnr (dB)"]),
            "hf_energy_ratio": r(row["hf energy ratio"]),
            "relative_hf_error": r(row["relative hf error"]),
        }
    for (dataset, task), g in completion.groupby(["dataset", "task"], sort=True):
        # how many models' completions beat the training-free baseline in PSNR, and the best of them
        base, models = g[g["seeds"] == 0], g[g["seeds"] > 0]
        if base.empty or models.empty:
            continue
        psnr = models.set_index("method")["psnr (dB)"].astype(float)
        out[dataset]["completion"][task]["summary"] = {
            "models": int(len(psnr)),
            "above_baseline": int((psnr > float(base["psnr (dB)"].iloc[0])).sum()),
            "best_model": model_label(str(psnr.idxmax())) if psnr.notna().any() else "n/a",
            "best_psnr_db": r(float(psnr.max())),
        }
    return out


def vae_findings(energy: pd.DataFrame, vae: pd.DataFrame) -> str:
    """The known effect checked in words: do VAE samples (and decoder means) carry less
    high-frequency energy than the test images? One Markdown bullet per dataset and VAE."""
    words = {
        "yes": "less than the test images",
        "no": "more than the test images, not less",
        "not resolved": "no difference the intervals resolve",
    }
    lines = []
    for row in vae.to_dict("records"):
        kind = {v: k for k, v in SET_LABELS.items()}[row["images"]]
        if kind not in ("samples", "decoder_mean"):
            continue
        data = energy[(energy["dataset"] == row["dataset"]) & (energy["model"] == "test data")].iloc[0]
        what = "samples x ~ p(x|z)" if kind == "samples" else "decoder means μ(z)"
        lines.append(
            f"- {row['dataset']}, {row['model']} {what}: high-frequency fraction {row['hf fraction']:.3f} "
            f"[{row['hf ci low']:.3f}, {row['hf ci high']:.3f}] against {data['hf fraction']:.3f} "
            f"[{data['hf ci low']:.3f}, {data['hf ci high']:.3f}] for the test images "
            f"(ratio {row['hf ratio to data']:.2f}): {words[_verdict(row, data)]}."
        )
    return "\n".join(lines) if lines else "No VAE runs among the probes."


def _verdict(row: dict[str, Any] | pd.Series, data: dict[str, Any] | pd.Series) -> str:
    """ "yes" when the set's HF-fraction interval lies wholly below the test images', "no" when wholly
    above, "not resolved" when the two intervals overlap."""
    if row["hf ci high"] < data["hf ci low"]:
        return "yes"
    if row["hf ci low"] > data["hf ci high"]:
        return "no"
    return "not resolved"
