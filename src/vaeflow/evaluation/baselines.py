"""Sanity baselines every density model of the study must beat, on its own splits and accounting.

Images have ``K`` grey levels and ``D = C·H·W`` pixels; bits/dim is ``-log P(x) / (D ln 2)`` in
level units (:mod:`vaeflow.evaluation.bits`), so these numbers sit beside the models' own:

* **uniform**: ``P(x) = K^-D``, exactly ``log2 K`` bits/dim on every split; no parameters.
* **independent pixels**: one categorical over the ``K`` levels per pixel, fitted on the training
  split with add-one (Laplace) smoothing, ``p_d(k) = (n_d(k) + 1) / (N_train + K)``;
  ``log P(x) = Σ_d log p_d(x_d)``, an exact discrete likelihood; ``D (K - 1)`` free parameters.
  Add-one smoothing mixes the maximum-likelihood frequencies with the uniform, so on the
  training split it never costs more than the uniform (concavity of the log).

Real vectors (``levels = None``, e.g. the 2-D toy data):

* **Gaussian**: ``N(μ, Σ)`` with the maximum-likelihood mean and full covariance of the
  training split (``Σ`` divides by ``N``), an exact density; bits/dim ``-log p(x) / (D ln 2)``
  from nats, as the flows report continuous data; ``D + D (D + 1) / 2`` parameters.

One baseline per dataset is the *reference* a model must beat: independent pixels on images,
the Gaussian on real vectors.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vaeflow.data.store import SPLITS, PreparedDataset, load_prepared
from vaeflow.evaluation.bits import bits_per_dim
from vaeflow.io import read_json, write_atomic, write_json_atomic

EXACT_DISCRETE = "exact discrete likelihood"
EXACT_DENSITY = "exact density"
CHUNK = 4096  # examples per pass over a split: bounded memory on the full-size datasets


def _chunks(x: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(x), CHUNK):
        yield x[start : start + CHUNK]


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def check_levels(data: PreparedDataset) -> int:
    """``K`` of an image dataset, after checking that every split holds integers in ``0 … K-1``."""
    levels = data.levels
    if levels is None:
        raise ValueError(
            f"dataset {data.name!r} has no grey levels (levels = None): the discrete baselines "
            "need images of integer levels; real vectors get the Gaussian baseline"
        )
    for split in SPLITS:
        x = data.split(split)
        if not np.issubdtype(x.dtype, np.integer):
            raise ValueError(
                f"dataset {data.name!r}: split {split!r} is {x.dtype}, but levels = {levels} asks for "
                f"integer grey levels; prepare the dataset again (rule prepare_data)"
            )
        low, high = int(x.min()), int(x.max())
        if low < 0 or high >= levels:
            raise ValueError(
                f"dataset {data.name!r}: split {split!r} holds grey levels {low} … {high}, outside "
                f"0 … {levels - 1} (levels = {levels} in its manifest); the prepared data do not match "
                f"their manifest: delete results/data/{data.name}.npz and .json and rerun snakemake"
            )
    return levels


def uniform_log_prob(x: np.ndarray, levels: int) -> np.ndarray:
    """``log P(x) = -D log K`` nats for every example of ``x`` (shape ``(N, ...)``)."""
    num_dims = _flat(x).shape[1]
    return np.full(len(x), -num_dims * math.log(levels), dtype=np.float64)


def fit_independent_pixels(train: np.ndarray, levels: int) -> np.ndarray:
    """``log p_d(k)`` of shape ``(D, K)``: add-one smoothed level frequencies of each pixel,
    ``p_d(k) = (n_d(k) + 1) / (N_train + K)``."""
    flat = _flat(train)
    num_dims = flat.shape[1]
    counts = np.zeros(num_dims * levels, dtype=np.int64)
    offsets = np.arange(num_dims, dtype=np.int64) * levels  # pixel d's counts start at d·K
    for chunk in _chunks(flat):
        counts += np.bincount((chunk.astype(np.int64) + offsets).ravel(), minlength=num_dims * levels)
    counts = counts.reshape(num_dims, levels)
    return np.log(counts + 1.0) - math.log(len(flat) + levels)


def independent_pixels_log_prob(log_p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``log P(x) = Σ_d log p_d(x_d)`` nats per example, for the table of :func:`fit_independent_pixels`."""
    flat = _flat(x)
    pixels = np.arange(flat.shape[1])
    return np.concatenate([log_p[pixels, chunk.astype(np.int64)].sum(axis=1) for chunk in _chunks(flat)])


def fit_gaussian(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood mean and full covariance (divided by ``N``) of the training split."""
    flat = _flat(train).astype(np.float64)
    mean = flat.mean(axis=0)
    centred = flat - mean
    return mean, centred.T @ centred / len(flat)


def gaussian_log_prob(mean: np.ndarray, cov: np.ndarray, x: np.ndarray, name: str = "data") -> np.ndarray:
    """``log N(x; μ, Σ) = -(D log 2π + log det Σ + (x-μ)ᵀ Σ⁻¹ (x-μ)) / 2`` nats per example, through
    the Cholesky factor of ``Σ``."""
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as err:
        raise ValueError(
            f"dataset {name!r}: the training split's covariance is singular (a constant or linearly "
            f"dependent coordinate), so the Gaussian baseline has no density; check the data"
        ) from err
    num_dims = len(mean)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    white = np.linalg.solve(chol, (_flat(x).astype(np.float64) - mean).T)  # L⁻¹(x - μ), shape (D, N)
    return -0.5 * (num_dims * math.log(2 * math.pi) + log_det + np.square(white).sum(axis=0))


def _summary(log_prob: np.ndarray, num_dims: int) -> tuple[float, float]:
    """Mean bits/dim over the examples and its standard error."""
    bpd = bits_per_dim(log_prob, num_dims)
    se = float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1 else 0.0
    return float(bpd.mean()), se


def _entry(
    name: str,
    label: str,
    description: str,
    quantity: str,
    parameters: int,
    fitted_on: str | None,
    reference: bool,
    scores: dict[str, np.ndarray],
    num_dims: int,
) -> tuple[dict[str, Any], np.ndarray]:
    summaries = {split: _summary(scores[split], num_dims) for split in SPLITS}
    return {
        "name": name,
        "label": label,
        "description": description,
        "quantity": quantity,
        "parameters": int(parameters),
        "fitted_on": fitted_on,
        "reference": reference,
        "bits_per_dim": {split: bpd for split, (bpd, _) in summaries.items()},
        "bits_per_dim_se": {split: se for split, (_, se) in summaries.items()},
    }, scores["test"]


def baselines(data: PreparedDataset) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Every baseline of ``data``: its record (bits/dim per split, parameters, quantity) and its
    per-example test log-likelihood in nats."""
    num_dims = data.num_dims
    splits = {split: data.split(split) for split in SPLITS}
    if data.levels is None:
        mean, cov = fit_gaussian(data.train)
        return [
            _entry(
                "gaussian",
                "Gaussian",
                "Gaussian with the maximum-likelihood mean and full covariance of the training split",
                EXACT_DENSITY,
                num_dims + num_dims * (num_dims + 1) // 2,
                "train",
                True,
                {split: gaussian_log_prob(mean, cov, x, data.name) for split, x in splits.items()},
                num_dims,
            )
        ]
    levels = check_levels(data)
    uniform, uniform_test = _entry(
        "uniform",
        "uniform",
        f"uniform over the K = {levels} grey levels of every pixel: log2 K bits/dim",
        EXACT_DISCRETE,
        0,
        None,
        False,
        {split: uniform_log_prob(x, levels) for split, x in splits.items()},
        num_dims,
    )
    # exactly, not up to the rounding of -D log K / (D ln 2): every example costs the same
    uniform.update(
        bits_per_dim={split: math.log2(levels) for split in SPLITS}, bits_per_dim_se={split: 0.0 for split in SPLITS}
    )
    log_p = fit_independent_pixels(data.train, levels)
    pixels = _entry(
        "independent_pixels",
        "independent pixels",
        f"a categorical over the K = {levels} levels for each of the D = {num_dims} pixels, independently: "
        "add-one (Laplace) smoothed level counts of the training split, p_d(k) = (n_d(k) + 1) / (N_train + K)",
        EXACT_DISCRETE,
        num_dims * (levels - 1),
        "train",
        True,
        {split: independent_pixels_log_prob(log_p, x) for split, x in splits.items()},
        num_dims,
    )
    return [(uniform, uniform_test), pixels]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_baselines(
    data_path: str | os.PathLike[str], out: str | os.PathLike[str], scores_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """Compute every baseline of the prepared dataset at ``data_path`` (its sha256 checked against
    the manifest beside it) and write ``out`` (JSON) and ``scores_path`` (per-example test
    log-likelihood in nats, one array per baseline, plus the test labels), both atomically."""
    data_path, out, scores_path = Path(data_path), Path(out), Path(scores_path)
    manifest_path = data_path.with_suffix(".json")
    data = load_prepared(data_path, manifest_path)
    manifest = read_json(manifest_path)
    entries = baselines(data)
    result = {
        "dataset": data.name,
        "data": {
            "npz": str(data_path),
            "manifest": str(manifest_path),
            "manifest_sha256": _file_sha256(manifest_path),
            "arrays_sha256": {split: manifest["arrays"][split]["sha256"] for split in SPLITS},
        },
        "levels": data.levels,
        "num_dims": data.num_dims,
        "example_shape": list(data.example_shape),
        "split_sizes": {split: int(len(data.split(split))) for split in SPLITS},
        "units": "bits/dim = -log P(x) / (D ln 2), in level units (each grey level a bin of width one)",
        "test_scores": os.path.relpath(scores_path, out.parent),
        "baselines": [entry for entry, _ in entries],
    }
    arrays = {entry["name"]: test for entry, test in entries}
    if data.test_labels is not None:
        arrays["labels"] = data.test_labels

    def save_scores(path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)

    write_atomic(scores_path, save_scores)
    write_json_atomic(out, result)
    return result
