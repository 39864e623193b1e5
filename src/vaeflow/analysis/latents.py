"""The latents analysis: what do the latent spaces of VAEs and flows capture?

From the ``latents`` probe of every run (:mod:`vaeflow.probes.latents`):

* a **linear probe** (Alain & Bengio 2017): multinomial logistic regression on standardised
  features, fixed ``C``, fitted on train latents and scored by accuracy on test latents; the same
  probe on the raw inputs of the very same examples is the pixel baseline;
* **dimensionality**: a VAE compresses ``D`` inputs to ``latent_dim`` coordinates, a flow keeps
  ``D``. Reported: the number of *active units* (coordinates whose posterior mean varies over
  the data, ``Var_x(z_u) > threshold``; Burda et al. 2016 §5.2, threshold 10⁻²) and the number
  of principal components that explain a fraction (e.g. 95 %) of the variance of the latents and
  of the pixels;
* **interpolations** between test pairs (every model) and **traversals** of single VAE
  coordinates, decoded to images, as Altair image grids.

Every table holds mean ± sd over training seeds; every figure shows the lowest seed of each model.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from vaeflow.analysis.figures import (
    EDGE_PADDING,
    QUANTITY_CODES,
    Shown,
    code_legend,
    model_label,
    model_order,
    readable,
    readable_text,
    short_codes,
)
from vaeflow.analysis.runs import ProbeResult, load_probes

# The tables and figures this analysis writes (results/tables/<stem>.csv and .md, results/figures/<stem>.*),
# each with its caption, written only here: a title (its heading in Snakemake's report) and the caption
# (Quarto Markdown). The site and the report show it (vaeflow.analysis.captions).
TABLES = {
    "latents_probe": {
        "title": "Linear probes of the class from the latents",
        "caption": (
            "Per dataset and model: which latent was probed (a code the legend under the table spells out), "
            "its size, the numbers of training and test examples, the number of classes and seeds, the "
            "probe's test accuracy on the latents and on the pixels of the same examples (mean ± sd over "
            "seeds) and their difference, and the model's test bits/dim with the quantity it is. The slow "
            "density models (FFJORD, the IAF) encode fewer examples; their pixel baseline uses the same fewer "
            "examples."
        ),
    },
    "latents_dimensionality": {
        "title": "How many dimensions are used?",
        "caption": (
            "Per dataset and model: the data dimension $D$, the latent size, the active units (latent "
            "coordinates whose variance over the test examples exceeds the threshold), and the principal "
            "components needed for the stated share of variance, of the latents and of the same examples' "
            "pixels (mean ± sd over seeds)."
        ),
    },
}
FIGURES = {
    "latents_probe_accuracy": {
        "title": "Linear-probe accuracy against the pixels",
        "caption": (
            "Linear-probe test accuracy of every model (points, one per seed) against the pixel baseline on "
            "the same examples (ticks), one panel per dataset."
        ),
    },
    "latents_interpolations": {
        "title": "Interpolations in latent space",
        "caption": (
            "Interpolations on MNIST (lowest seed of each model): each row is a model, each block a pair of "
            "test images, shown at both ends, with the images decoded from evenly spaced points on the "
            "straight line between their latents in between. VAEs decode with the decoder mean; flows invert "
            "the map and take the grey-level bin. Pixels a flow inverse overflowed are left empty."
        ),
    },
    "latents_traversals": {
        "title": "Traversals of VAE coordinates",
        "caption": (
            "Traversals of single VAE coordinates on MNIST (lowest seed): one row per coordinate, the most "
            "active first, of each VAE; the first column is the test image whose code is the starting point, "
            "then the decoder mean as that coordinate alone runs across the prior's range."
        ),
    },
    "latents_toy2d": {
        "title": "Latent codes of the 2-D data",
        "caption": (
            'The 2-D data: test points ("data") and their latent codes under every model, coloured by the '
            "mixture component or region that generated them, one panel per model (lowest seed). A flow "
            "should map the data to a standard Gaussian; a VAE's two coordinates are its posterior means."
        ),
    },
}

#: settings the notebook reads from ``analyses.latents`` (the probe's are in vaeflow.probes.latents)
NOTEBOOK_SETTINGS: dict[str, str] = {
    "probe_C": "a positive number: inverse L2 strength of the logistic-regression probe",
    "probe_max_iter": "a positive integer: L-BFGS iterations of the probe",
    "variance_fraction": "a number in (0, 1]: variance the counted principal components explain",
    "active_threshold": "a non-negative number: Var_x(z_u) above which a latent coordinate is active",
    "figure_dataset": "a dataset name: whose interpolations and traversals the figures show",
    "scatter_points": "a positive integer: test points per model in the 2-D latent scatter",
}


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The notebook's settings, checked; a missing or ill-typed key raises ValueError naming it."""
    missing = [key for key in NOTEBOOK_SETTINGS if key not in settings]
    if missing:
        raise ValueError(
            f"latents analysis: analyses.latents lacks {', '.join(missing)}; add them to the config "
            f"({'; '.join(f'{k}: {NOTEBOOK_SETTINGS[k]}' for k in missing)})"
        )

    def number(key: str, ok) -> float:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise ValueError(
                f"latents analysis: analyses.latents.{key} must be {NOTEBOOK_SETTINGS[key]}, got {value!r}"
            )
        return value

    out = dict(settings)
    out["probe_C"] = float(number("probe_C", lambda v: v > 0))
    out["probe_max_iter"] = int(number("probe_max_iter", lambda v: int(v) == v and v >= 1))
    out["variance_fraction"] = float(number("variance_fraction", lambda v: 0 < v <= 1))
    out["active_threshold"] = float(number("active_threshold", lambda v: v >= 0))
    out["scatter_points"] = int(number("scatter_points", lambda v: int(v) == v and v >= 1))
    if not isinstance(settings["figure_dataset"], str):
        raise ValueError(
            f"latents analysis: analyses.latents.figure_dataset must be {NOTEBOOK_SETTINGS['figure_dataset']}, "
            f"got {settings['figure_dataset']!r}"
        )
    return out


# --- the numbers ------------------------------------------------------------------------------


def linear_probe_accuracy(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, C: float, max_iter: int
) -> tuple[float, bool]:
    """Test accuracy of a logistic-regression probe on standardised features, and whether L-BFGS converged.

    Standardisation uses the train statistics (constant features are left at zero). A probe
    that stops at ``max_iter`` is still scored; the flag says so.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    if len(np.unique(y_train)) < 2:
        raise ValueError(
            f"linear probe: the {len(y_train)} train examples hold one class only; "
            "raise max_train (or max_train_slow) in analyses.latents"
        )
    scaler = StandardScaler().fit(x_train)
    classifier = LogisticRegression(C=C, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(scaler.transform(x_train), y_train)
    converged = bool(np.all(np.asarray(classifier.n_iter_) < max_iter))
    accuracy = float(np.mean(classifier.predict(scaler.transform(x_test)) == np.asarray(y_test)))
    return accuracy, converged


def pca_components(x: np.ndarray, fraction: float) -> int:
    """Fewest principal components whose variance sums to at least ``fraction`` of the total.

    Eigenvalues of the sample covariance via the singular values of the centred data;
    0 for data without variance.
    """
    x = np.asarray(x, dtype=np.float64)
    singular = np.linalg.svd(x - x.mean(0), compute_uv=False)
    variance = singular**2
    total = variance.sum()
    if total <= 0:
        return 0
    cumulative = np.cumsum(variance) / total
    # a tolerance of a few ulps, so that a fraction met exactly is not missed by rounding
    return int(np.searchsorted(cumulative, fraction - 1e-12) + 1)


def active_units(activity: np.ndarray, threshold: float) -> int:
    """Number of latent coordinates with ``Var_x(z_u) > threshold`` (Burda et al. 2016, §5.2)."""
    return int(np.sum(np.asarray(activity) > threshold))


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _scalar(result: ProbeResult, key: str) -> Any:
    if key not in result.arrays:
        raise ValueError(
            f"{result.path} has no array {key!r}; it was not written by the latents probe "
            "(rerun the probe rule for this run)"
        )
    return result.arrays[key].item()


def run_table(results: list[ProbeResult], settings: dict[str, Any]) -> pd.DataFrame:
    """One row per run: probe accuracies on latents and on pixels (same examples), active units,
    principal components, sizes. Pixel numbers are computed once per distinct example set.

    Runs on an unlabelled dataset get NaN accuracies (the probe needs classes); the tables say so.
    Linear algebra runs on one BLAS thread: the fits are small, and on a shared CPU more threads
    only wait on each other (7x slower here).
    """
    with threadpool_limits(1):
        return _run_table(results, settings)


def _run_table(results: list[ProbeResult], settings: dict[str, Any]) -> pd.DataFrame:
    if not results:
        raise ValueError("latents analysis: no probe files given; run the latents probe rule first")
    s = check_settings(settings)
    pixel_cache: dict[str, tuple[float, bool, int]] = {}
    rows = []
    for r in results:
        a = r.arrays
        labelled = bool(_scalar(r, "labelled"))
        pixels_key = _fingerprint(a["train_inputs"], a["test_inputs"], a["train_labels"], a["test_labels"])
        if pixels_key not in pixel_cache:
            acc, conv = (
                linear_probe_accuracy(
                    a["train_inputs"],
                    a["train_labels"],
                    a["test_inputs"],
                    a["test_labels"],
                    s["probe_C"],
                    s["probe_max_iter"],
                )
                if labelled
                else (float("nan"), True)
            )
            pixel_cache[pixels_key] = (acc, conv, pca_components(a["train_inputs"], s["variance_fraction"]))
        pixel_acc, pixel_conv, pixel_pca = pixel_cache[pixels_key]
        if labelled:
            acc, conv = linear_probe_accuracy(
                a["train_latents"],
                a["train_labels"],
                a["test_latents"],
                a["test_labels"],
                s["probe_C"],
                s["probe_max_iter"],
            )
        else:
            acc, conv = float("nan"), True
        rows.append(
            {
                "dataset": r.dataset,
                "model": r.model,
                "seed": r.seed,
                "kind": str(_scalar(r, "kind")),
                "latent": str(_scalar(r, "latent_source")),
                "D": int(_scalar(r, "num_dims")),
                "latent_dim": int(_scalar(r, "latent_dim")),
                "train_examples": int(len(a["train_latents"])),
                "test_examples": int(len(a["test_latents"])),
                "classes": int(len(np.unique(a["train_labels"]))) if labelled else 0,
                "probe_accuracy": acc,
                "pixel_accuracy": pixel_acc,
                "probe_converged": conv and pixel_conv,
                "active_units": active_units(a["activity"], s["active_threshold"]),
                "pca_latents": pca_components(a["train_latents"], s["variance_fraction"]),
                "pca_pixels": pixel_pca,
                "probe_seconds": float(_scalar(r, "seconds")),
            }
        )
    return pd.DataFrame(rows).sort_values(["dataset", "model", "seed"]).reset_index(drop=True)


def load_metrics(paths: list[str | Path]) -> pd.DataFrame:
    """Test bits/dim and the quantity it is (exact or a bound) of each run, from metrics.json."""
    rows = []
    for path in paths:
        m = json.loads(Path(path).read_text(encoding="utf-8"))
        rows.append(
            {
                "dataset": m["dataset"],
                "model": m["model"],
                "seed": int(m["seed"]),
                "test_bpd": float(m["test"]["bits_per_dim"]),
                "bound": m["test"]["bound"],
            }
        )
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "test_bpd", "bound"])


def mean_sd(values: pd.Series, digits: int = 3) -> str:
    """``mean ± sd`` over seeds (sd with ddof 1; the mean alone for one seed; '–' when every value is NaN)."""
    values = pd.Series(values, dtype=float)
    if values.isna().all():
        return "–"
    if values.isna().any():
        raise ValueError(
            f"mean_sd: {int(values.isna().sum())} of {len(values)} values are NaN; "
            "a run is missing a number it should have"
        )
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def probe_table(runs: pd.DataFrame, metrics: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset × model: linear-probe test accuracy on latents and on the same examples' pixels
    (mean ± sd over seeds), their difference, the examples used, and test bits/dim where known."""
    rows = []
    for (dataset, model), g in runs.groupby(["dataset", "model"], sort=True):
        row = {
            "dataset": dataset,
            "model": model,
            "latent": g["latent"].iloc[0],
            "latent dims": int(g["latent_dim"].iloc[0]),
            "train / test examples": f"{int(g['train_examples'].iloc[0])} / {int(g['test_examples'].iloc[0])}",
            "classes": int(g["classes"].iloc[0]),
            "seeds": int(g["seed"].nunique()),
            "probe accuracy (latents)": mean_sd(g["probe_accuracy"]),
            "probe accuracy (pixels)": mean_sd(g["pixel_accuracy"]),
            "latents − pixels": mean_sd(g["probe_accuracy"] - g["pixel_accuracy"]),
        }
        if metrics is not None and not metrics.empty:
            m = metrics[(metrics["dataset"] == dataset) & (metrics["model"] == model) & metrics["seed"].isin(g["seed"])]
            # every number with the quantity it is: exact density or the bound's name
            row["test bits/dim"] = (
                f"{mean_sd(m['test_bpd'])} ({', '.join(sorted(m['bound'].unique()))})" if len(m) else "–"
            )
        rows.append(row)
    return pd.DataFrame(rows)


def dimensionality_table(runs: pd.DataFrame, fraction: float, threshold: float) -> pd.DataFrame:
    """Per dataset × model: D, latent size, active units and principal components of latents and pixels."""
    pct = f"{100 * fraction:g}%"
    rows = []
    for (dataset, model), g in runs.groupby(["dataset", "model"], sort=True):
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "D": int(g["D"].iloc[0]),
                "latent dims": int(g["latent_dim"].iloc[0]),
                f"active units (Var > {threshold:g})": mean_sd(g["active_units"], 1),
                f"PCs for {pct} (latents)": mean_sd(g["pca_latents"], 1),
                f"PCs for {pct} (pixels)": mean_sd(g["pca_pixels"], 1),
                "seeds": int(g["seed"].nunique()),
            }
        )
    return pd.DataFrame(rows)


# --- the tables as the site shows them -----------------------------------------------------------


def _in_model_order(table: pd.DataFrame) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(model_order(table["model"]))}
    return (
        table.assign(_r=table["model"].map(rank))
        .sort_values(["dataset", "_r"], kind="stable")
        .drop(columns="_r")
        .reset_index(drop=True)
    )


def _latent_codes(latents: pd.Series) -> dict[str, str]:
    """L1, L2, …: a short code per kind of latent (spelled out in the legend)."""
    return {text: f"L{i}" for i, text in enumerate(dict.fromkeys(latents), start=1)}


_WITH_QUANTITY = re.compile(r"^(.*?) \((.+)\)$")


def probe_shown(table: pd.DataFrame) -> Shown:
    """The probe table as the site shows it: the latent and the bits/dim quantity as short codes, "mean ± sd"
    on one line to 3 significant figures."""
    table = _in_model_order(table)
    latents = _latent_codes(table["latent"])
    shown = table.assign(latent=table["latent"].map(latents))
    notes = [
        "Accuracies: mean ± sd over seeds (the mean alone for one seed).",
        "Latents: " + "; ".join(f"*{code}*: {text}" for text, code in latents.items()) + ".",
    ]
    if "test bits/dim" in table:
        split = table["test bits/dim"].map(lambda v: _WITH_QUANTITY.match(v) if isinstance(v, str) else None)
        quantities = short_codes([m.group(2) for m in split if m], QUANTITY_CODES)
        shown["test bits/dim"] = [
            f"{readable_text(m.group(1))} ({quantities[m.group(2)]})" if m else v
            for m, v in zip(split, table["test bits/dim"])
        ]
        legend = code_legend(quantities)
        if legend:
            notes.append("Test bits/dim with its quantity: " + legend)
    return Shown(readable(shown), notes)


def dimensionality_shown(table: pd.DataFrame) -> Shown:
    """The dimensionality table as the site shows it."""
    return Shown(readable(_in_model_order(table)), ["Mean ± sd over seeds (the mean alone for one seed)."])


# --- figures ----------------------------------------------------------------------------------


def png_data_url(levels: np.ndarray, top: int) -> str:
    """A grey PNG (with alpha; NaN pixels transparent) of a 2-D array of levels in ``[0, top]``, as a
    ``data:`` URL that Vega renders offline. Written with zlib alone (PNG spec, colour type 4)."""
    a = np.asarray(levels, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"png_data_url: expected a 2-D image, got shape {a.shape}")
    missing = np.isnan(a)
    grey = np.round(np.clip(np.where(missing, 0, a), 0, top) * (255.0 / top)).astype(np.uint8)
    alpha = np.where(missing, 0, 255).astype(np.uint8)
    pixels = np.stack([grey, alpha], axis=-1)
    height, width = a.shape
    raw = b"".join(b"\x00" + pixels[i].tobytes() for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 4, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _grey(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` levels to one ``(H, W)`` grey image: the plain mean over channels, so a grey dataset
    (C = 1) is drawn as it is and an RGB one (cifar10, C = 3) as the unweighted mean of R, G and B, not in colour
    and not its BT.601 luma."""
    image = np.asarray(image, dtype=np.float64)
    return image.mean(0) if image.ndim == 3 else image


def figure_runs(results: list[ProbeResult], dataset: str, key: str) -> list[ProbeResult]:
    """The lowest-seed run of each model on ``dataset`` that holds array ``key``."""
    chosen: dict[str, ProbeResult] = {}
    for r in results:
        if r.dataset == dataset and key in r.arrays and (r.model not in chosen or r.seed < chosen[r.model].seed):
            chosen[r.model] = r
    return [chosen[m] for m in sorted(chosen)]


def _image_grid(frame: pd.DataFrame, columns: list[str], rows: list[str], pixels: int, title: str) -> alt.Chart:
    size = pixels
    return (
        alt.Chart(frame, title=title)
        .mark_image(width=size, height=size, aspect=False, smooth=False)
        .encode(
            x=alt.X(
                "column:N",
                sort=columns,
                title=None,
                axis=alt.Axis(orient="top", labelAngle=0, ticks=False, domain=False),
            ),
            y=alt.Y("row:N", sort=rows, title=None, axis=alt.Axis(ticks=False, domain=False)),
            url="url:N",
            tooltip=["row:N", "column:N"],
        )
        .properties(width=(size + 4) * len(columns), height=(size + 4) * len(rows))
    )


def interpolation_frame(results: list[ProbeResult], dataset: str) -> pd.DataFrame:
    """Long frame of the interpolation images on ``dataset``: pair, row (model · seed), column, url, NaN pixels."""
    rows = []
    for r in figure_runs(results, dataset, "interp_images"):
        a = r.arrays
        top = int(a["levels"]) - 1
        label = f"{r.model} · seed {r.seed}"
        for p, (pair, ends) in enumerate(zip(a["interp_images"], a["interp_originals"])):
            names = [f"t={t:.2f}" for t in a["interp_alphas"]]
            cells = [("x_a", ends[0])] + list(zip(names, pair)) + [("x_b", ends[1])]
            for column, image in cells:
                grey = _grey(image)
                rows.append(
                    {
                        "pair": p,
                        "row": label,
                        "column": column,
                        "url": png_data_url(grey, top),
                        "nan_pixels": int(np.isnan(grey).sum()),
                        "classes": " → ".join(str(c) for c in a["interp_labels"][p]) if "interp_labels" in a else "",
                    }
                )
    return pd.DataFrame(rows, columns=["pair", "row", "column", "url", "nan_pixels", "classes"])


def interpolations_chart(frame: pd.DataFrame, pixels: int = 36) -> alt.VConcatChart:
    """Rows: model (lowest seed); columns: the test image x_a, points on the latent path, x_b; one block per pair."""
    if frame.empty:
        raise ValueError("latents analysis: no interpolation images for the figure dataset; check figure_dataset")
    charts = []
    for p, g in frame.groupby("pair", sort=True):
        columns = list(dict.fromkeys(g["column"]))
        rows = list(dict.fromkeys(g["row"]))
        classes = g["classes"].iloc[0]
        title = f"pair {p + 1}" + (f" (classes {classes})" if classes else "")
        charts.append(_image_grid(g, columns, rows, pixels, title))
    models = list(dict.fromkeys(frame["row"]))
    return (
        alt.vconcat(*charts)
        .configure_view(stroke=None)
        .properties(
            description=(
                f"Grids of decoded images, one block per pair of test images ({frame['pair'].nunique()} pairs) and "
                "one row "
                f"per model ({', '.join(models)}): the two test images at the ends and, between them, the images "
                "decoded "
                "from evenly spaced points on the straight line between their latents."
            )
        )
    )


def traversal_frame(results: list[ProbeResult], dataset: str) -> pd.DataFrame:
    """Long frame of the VAE traversals on ``dataset``: row (model · seed · coordinate), column (value), url."""
    rows = []
    for r in figure_runs(results, dataset, "traversal_images"):
        a = r.arrays
        top = int(a["levels"]) - 1
        for dim, images in zip(a["traversal_dims"], a["traversal_images"]):
            label = f"{r.model} · seed {r.seed} · z{int(dim)}"
            rows.append(
                {"row": label, "column": "x", "url": png_data_url(_grey(a["traversal_original"]), top), "nan_pixels": 0}
            )
            for value, image in zip(a["traversal_values"], images):
                grey = _grey(image)
                rows.append(
                    {
                        "row": label,
                        "column": f"{value:+.1f}",
                        "url": png_data_url(grey, top),
                        "nan_pixels": int(np.isnan(grey).sum()),
                    }
                )
    return pd.DataFrame(rows, columns=["row", "column", "url", "nan_pixels"])


def traversals_chart(frame: pd.DataFrame, pixels: int = 36) -> alt.Chart:
    """Rows: one VAE coordinate (most active first) of each VAE; columns: the test image, then its value."""
    if frame.empty:
        raise ValueError(
            "latents analysis: no VAE traversals for the figure dataset; check figure_dataset "
            "and that the study trains a VAE on it"
        )
    columns = list(dict.fromkeys(frame["column"]))
    rows = list(dict.fromkeys(frame["row"]))
    return (
        _image_grid(frame, columns, rows, pixels, "")
        .configure_view(stroke=None)
        .properties(
            description=(
                f"A grid of decoded images, one row per VAE latent coordinate ({len(rows)} rows: "
                f"{', '.join(rows)}): the "
                "test image first, then the decoder mean as that coordinate alone takes the values "
                + ", ".join(c for c in columns if c != "x")
                + " prior standard deviations."
            )
        )
    )


def accuracy_chart(runs: pd.DataFrame) -> alt.FacetChart:
    """Probe test accuracy per model (one point per seed) against the pixel baseline on the same
    examples (tick), one panel per dataset."""
    labelled = runs.dropna(subset=["probe_accuracy"])
    points = labelled.melt(
        id_vars=["dataset", "model", "seed"],
        value_vars=["probe_accuracy", "pixel_accuracy"],
        var_name="features",
        value_name="accuracy",
    )
    points["features"] = points["features"].map({"probe_accuracy": "latents", "pixel_accuracy": "pixels"})
    colour = alt.Color(
        "features:N", title="probe on", scale=alt.Scale(domain=["latents", "pixels"], range=["#1f77b4", "#555555"])
    )
    base = alt.Chart().encode(
        y=alt.Y("model:N", title=None, sort=model_order(points["model"])),
        x=alt.X("accuracy:Q", title="linear-probe test accuracy", scale=alt.Scale(domain=[0, 1], padding=EDGE_PADDING)),
        color=colour,
        tooltip=["dataset", "model", "seed", "features", alt.Tooltip("accuracy:Q", format=".3f")],
    )
    latents = base.transform_filter(alt.datum.features == "latents").mark_point(size=60, filled=True, opacity=0.8)
    pixels = base.transform_filter(alt.datum.features == "pixels").mark_tick(thickness=2, size=14)
    return (
        alt.layer(pixels, latents, data=points)
        .properties(width=240, height=160)
        .facet(facet=alt.Facet("dataset:N", title=None), columns=2)
        .properties(
            description=(
                "Dot plots of linear-probe test accuracy (0 to 1) per model, one panel per labelled dataset ("
                + ", ".join(sorted(points["dataset"].unique()))
                + "): a blue point per seed for the probe on the model's "
                "latents and a grey tick for the same probe on the pixels of the same examples."
            )
        )
    )


def scatter_frame(results: list[ProbeResult], points: int) -> pd.DataFrame:
    """The first ``points`` test latents of each model (lowest seed) on every 2-D real-valued dataset,
    and the test points themselves as the panel "data"."""
    frames = []
    two_d = sorted({r.dataset for r in results if int(r.arrays["levels"]) == 0 and int(r.arrays["num_dims"]) == 2})
    for dataset in two_d:
        runs = [r for r in figure_runs(results, dataset, "test_latents") if int(r.arrays["latent_dim"]) == 2]
        if not runs:
            continue
        first = runs[0].arrays
        x, y = first["test_inputs"][:points].astype(np.float64), first["test_labels"][:points]
        frames.append(pd.DataFrame({"dataset": dataset, "panel": "data", "z1": x[:, 0], "z2": x[:, 1], "label": y}))
        for r in runs:
            z, y = r.arrays["test_latents"][:points], r.arrays["test_labels"][:points]
            frames.append(
                pd.DataFrame(
                    {
                        "dataset": dataset,
                        "panel": f"{r.model} · seed {r.seed}",
                        "z1": z[:, 0],
                        "z2": z[:, 1],
                        "label": y,
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=["dataset", "panel", "z1", "z2", "label"])
    return pd.concat(frames, ignore_index=True)


def scatter_chart(frame: pd.DataFrame) -> alt.TopLevelMixin:
    """Test points of each 2-D dataset ("data") and their latents, coloured by mixture component;
    one panel per model (lowest seed), three to a row."""
    if frame.empty:
        return (
            alt.Chart(pd.DataFrame({"text": ["no 2-D real-valued dataset in this study"]}))
            .mark_text(size=14)
            .encode(text="text:N")
            .properties(
                width=300, height=60, description=("No scatter plot: the study has no 2-D real-valued dataset.")
            )
        )
    frame = frame.copy()
    if frame["dataset"].nunique() > 1:
        frame["panel"] = frame["dataset"] + ": " + frame["panel"]
    panels = list(dict.fromkeys(frame["panel"]))  # data first, then the models, per dataset
    return (
        alt.Chart(frame)
        .mark_circle(size=8, opacity=0.6)
        .encode(
            x=alt.X("z1:Q", title=None),
            y=alt.Y("z2:Q", title=None),
            color=alt.Color("label:N", title="component"),
            tooltip=["panel", "label", alt.Tooltip("z1:Q", format=".2f"), alt.Tooltip("z2:Q", format=".2f")],
        )
        .properties(width=150, height=150)
        .facet(
            facet=alt.Facet("panel:N", sort=panels, title=None),
            columns=3,
        )
        .resolve_scale(x="independent", y="independent")
        .properties(
            description=(
                f"Scatter plots of 2-D points coloured by mixture component, one panel each ({', '.join(panels)}): "
                "the test "
                "points themselves (data) and their latent codes under each model."
            )
        )
    )


# --- numbers for the prose --------------------------------------------------------------------


def variables(runs: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    """Numbers the prose quotes: per dataset the pixel baseline, the best and worst model, and per
    model the probe accuracy (mean and sd), active units and principal components."""
    s = check_settings(settings)
    out: dict[str, Any] = {
        "runs": int(len(runs)),
        "seeds": int(runs["seed"].nunique()),
        "probe_C": s["probe_C"],
        "variance_fraction_pct": round(100 * s["variance_fraction"], 1),
        "active_threshold": s["active_threshold"],
        "probe_fits_not_converged": int((~runs["probe_converged"]).sum()),
    }
    for dataset, g in runs.groupby("dataset", sort=True):
        block: dict[str, Any] = {"D": int(g["D"].iloc[0])}
        means = g.groupby("model")["probe_accuracy"].mean().dropna()
        full = g[g["train_examples"] == g["train_examples"].max()]
        if len(means):
            block.update(
                pixel_accuracy=round(float(full["pixel_accuracy"].mean()), 3),
                pixel_train_examples=int(full["train_examples"].iloc[0]),
                best_model=model_label(str(means.idxmax())),
                best_accuracy=round(float(means.max()), 3),
                worst_model=model_label(str(means.idxmin())),
                worst_accuracy=round(float(means.min()), 3),
            )
        block["pixel_pcs"] = int(round(float(full["pca_pixels"].mean())))
        for model, m in g.groupby("model", sort=True):
            entry = {
                "seeds": int(m["seed"].nunique()),
                "latent_dim": int(m["latent_dim"].iloc[0]),
                "active_units": round(float(m["active_units"].mean()), 1),
                "pcs": round(float(m["pca_latents"].mean()), 1),
            }
            if m["probe_accuracy"].notna().all():
                entry.update(
                    probe_accuracy=round(float(m["probe_accuracy"].mean()), 3),
                    pixel_accuracy=round(float(m["pixel_accuracy"].mean()), 3),
                )
                if len(m) > 1:  # no sd from one seed
                    entry["probe_accuracy_sd"] = round(float(m["probe_accuracy"].std(ddof=1)), 3)
            block[model] = entry
        out[dataset] = block
    return out


def find_probes(probes: list[str], results_dir: str | Path = "results") -> list[ProbeResult]:
    """The probe files given, or every ``results/*/*/seed*/probes/latents.npz`` when none are."""
    paths = [Path(p) for p in probes] or sorted(Path(results_dir).glob("*/*/seed*/probes/latents.npz"))
    return load_probes(paths)


def find_metrics(metrics: list[str], results_dir: str | Path = "results") -> pd.DataFrame:
    """The metrics given, or every ``results/*/*/seed*/metrics.json`` when none are."""
    paths = [Path(p) for p in metrics] or sorted(Path(results_dir).glob("*/*/seed*/metrics.json"))
    return load_metrics(paths)
