"""The latents probe: what each trained model's latent space holds, for the latents analysis.

Per run it stores the latent codes of a capped number of train and test examples with their
labels and the raw inputs of the same examples (for the pixel baseline of the linear probe),
the per-coordinate variance of the test codes, and, on image data, decoded interpolations
between test pairs and (VAEs) latent traversals. The notebook fits the probes; the model work
happens here, once per run.

Which latent (every model is covered, on every dataset; each model says it, by its ``latent``,
``latent_source`` and ``from_latent``, :class:`vaeflow.models.DensityModel`):

* VAE: the posterior mean ``μ(x)`` of ``q(z|x)`` (Kingma & Welling 2014).
* VAE-IAF: ``z_T`` at ``ε = 0``, i.e. the inverse autoregressive flow applied to the Gaussian
  mean ``z_0 = μ(x)`` (Kingma et al. 2016, eq. 10). Not the pre-IAF ``μ``: the decoder and the
  prior act on ``z_T``, so interpolating or traversing ``μ`` would skip the IAF; ``ε = 0``
  makes the code deterministic (one point of the posterior, not its exact mean).
* Flows (Real NVP, Glow, MAF, IAF, FFJORD): ``z = f(y)``, the base variable of the density
  direction, with ``y = x + u`` uniformly dequantised in level units (one draw from a generator
  seeded with the evaluation seed, so every run sees the same noise) on images, ``y = x`` on
  2-D data. Glow's ``z`` is its standardised ``ε`` (prior ``N(0, I)``); FFJORD's is the ODE
  solution without the trace (:meth:`FFJORD.transform`). IAF's and FFJORD's density direction
  costs ``D`` sequential MADE passes per block and an ODE solve (about 110–400 examples/s on
  14×14 and 16×16 images on one CPU thread), so on images the models named in ``slow_models``
  use the smaller caps ``max_train_slow``/``max_test_slow``; the pixel baseline is fitted on
  the very same examples, so their comparison stays like-for-like.
* Flow++ on images: the main flow's ``z = f(x + u)`` with ``u ~ q(u|x)`` from its own
  variational dequantiser (one draw, seeded): the map whose density the model reports;
  on 2-D data (an exact flow) ``z = f(x)``.

Decoded images: VAEs show the decoder's mean (discretised logistic, level units) rounded to the
nearest level and clamped to ``[0, K-1]``; flows ``floor(clamp(f⁻¹(z), 0, K-1))``, the bin a
continuous output falls in (:func:`vaeflow.models.transforms.to_levels`). A flow inverse that
overflows gives NaN pixels there: ``interp_images`` and ``traversal_images`` may hold NaN (the
figures leave such pixels empty); every latent and every other number is finite or the probe fails.

Arrays (``n`` train / ``m`` test examples, latent size ``L``, ``D`` data dimensions)::

    model, dataset, kind ("vae"/"flow"), latent_source   0-d str
    latent_dim (L), num_dims (D), levels (K; 0 on real-valued data), labelled (0/1)   0-d int
    train_latents (n, L), test_latents (m, L)   float32
    train_labels (n,), test_labels (m,)   int64 (-1 where the dataset has no labels)
    train_inputs (n, D), test_inputs (m, D)   the raw examples (uint8 levels on images, float32 otherwise)
    activity (L,)   variance over the test examples of each latent coordinate (Burda et al. 2016 §5.2)
    seconds   0-d float, wall time of the probe
  images only:
    interp_index (P, 2)  test indices of each pair; interp_labels (P, 2) their labels (-1: none);
    interp_alphas (S,); interp_method 0-d str
    interp_originals (P, 2, C, H, W), interp_images (P, S, C, H, W)   levels as float32
  VAEs on images only:
    traversal_index 0-d int (test index of the base image), traversal_dims (T,) (most active first),
    traversal_values (V,), traversal_original (C, H, W), traversal_images (T, V, C, H, W)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaeflow.data import PreparedDataset
from vaeflow.data.dequantization import model_input, to_tensor
from vaeflow.models import MODELS, DensityModel
from vaeflow.probes import model_name

#: settings the probe reads from ``analyses.latents`` (name -> what it must be)
PROBE_SETTINGS: dict[str, str] = {
    "max_train": "a positive integer: train examples whose latents are stored",
    "max_test": "a positive integer: test examples whose latents are stored",
    "slow_models": "a list of model names whose density direction is slow (use the *_slow caps on images)",
    "max_train_slow": "a positive integer: train examples for slow_models on images",
    "max_test_slow": "a positive integer: test examples for slow_models on images",
    "batch_size": "a positive integer: examples per forward pass",
    "interpolation_pairs": "a positive integer: test pairs interpolated (images)",
    "interpolation_steps": "an integer >= 2: points on each interpolation path, ends included",
    "interpolation": "'linear' or 'spherical': the path between two latents",
    "traversal_dims": "a non-negative integer: VAE latent coordinates traversed (most active first)",
    "traversal_steps": "an integer >= 2: values of each traversed coordinate",
    "traversal_range": "a positive number r: a traversal runs from -r to r (prior standard deviations)",
}

INTERPOLATIONS = ("linear", "spherical")


# --- settings ---------------------------------------------------------------------------------


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The probe's settings, checked; a missing or ill-typed key raises ValueError naming it."""
    missing = [key for key in PROBE_SETTINGS if key not in settings]
    if missing:
        raise ValueError(
            f"latents probe: analyses.latents lacks {', '.join(missing)}; add them to the config "
            f"({'; '.join(f'{k}: {PROBE_SETTINGS[k]}' for k in missing)})"
        )

    def bad(key: str) -> ValueError:
        return ValueError(f"latents probe: analyses.latents.{key} must be {PROBE_SETTINGS[key]}, got {settings[key]!r}")

    out = dict(settings)
    for key, least in (
        ("max_train", 1),
        ("max_test", 1),
        ("max_train_slow", 1),
        ("max_test_slow", 1),
        ("batch_size", 1),
        ("interpolation_pairs", 1),
        ("interpolation_steps", 2),
        ("traversal_dims", 0),
        ("traversal_steps", 2),
    ):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise bad(key)
        out[key] = int(value)
    slow = settings["slow_models"]
    if isinstance(slow, str) or not isinstance(slow, (list, tuple)) or any(name not in MODELS for name in slow):
        raise ValueError(
            f"latents probe: analyses.latents.slow_models must be a list of model names from "
            f"{', '.join(MODELS)}, got {slow!r}"
        )
    if settings["interpolation"] not in INTERPOLATIONS:
        raise bad("interpolation")
    r = settings["traversal_range"]
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0:
        raise bad("traversal_range")
    out["traversal_range"] = float(r)
    return out


# --- paths in latent space --------------------------------------------------------------------


def interpolate(a: Tensor, b: Tensor, alphas: Tensor, method: str = "linear") -> Tensor:
    """Points ``(S, L)`` on the path from ``a (L,)`` to ``b (L,)`` at fractions ``alphas (S,)``.

    ``linear``: ``(1-t)·a + t·b``. ``spherical`` (slerp, Shoemake 1985; used for Gaussian latents
    by White 2016): ``sin((1-t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b`` with ``Ω`` the angle between
    ``a`` and ``b``; it keeps the norm when ``|a| = |b|``, so midpoints are not pulled towards the
    origin where a high-dimensional Gaussian has almost no mass. Falls back to linear when
    ``a`` and ``b`` are (anti)parallel to within float precision.
    """
    t = alphas.to(a.dtype)[:, None]
    if method == "linear":
        return (1 - t) * a + t * b
    if method != "spherical":
        raise ValueError(f"interpolate: method must be one of {', '.join(INTERPOLATIONS)}, got {method!r}")
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(torch.finfo(a.dtype).tiny)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if torch.sin(omega).abs() < 1e-6:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def pair_indices(labels: np.ndarray | None, count: int, available: int) -> np.ndarray:
    """``(count, 2)`` test indices to interpolate between: with labels, pair ``p`` joins the next
    unused examples of classes ``c[2p mod k]`` and ``c[(2p+1) mod k]`` (classes sorted), so both
    ends differ in class; without labels, examples ``2p`` and ``2p+1``."""
    if labels is None:
        if 2 * count > available:
            raise ValueError(
                f"latents probe: {count} interpolation pairs need {2 * count} test examples, "
                f"the test split has {available}; lower interpolation_pairs"
            )
        return np.arange(2 * count, dtype=np.int64).reshape(count, 2)
    labels = np.asarray(labels)[:available]
    classes = np.unique(labels)
    if len(classes) < 2:
        return pair_indices(None, count, available)
    ends = []
    for j in range(2 * count):
        members = np.flatnonzero(labels == classes[j % len(classes)])
        occurrence = j // len(classes)
        if occurrence >= len(members):
            raise ValueError(
                f"latents probe: class {classes[j % len(classes)]} has only {len(members)} test "
                f"examples, too few for {count} interpolation pairs; lower interpolation_pairs"
            )
        ends.append(members[occurrence])
    return np.asarray(ends, dtype=np.int64).reshape(count, 2)


# --- the model's latents and images -----------------------------------------------------------


@torch.no_grad()
def latents(model: DensityModel, x: Tensor, levels: int | None, generator: torch.Generator, batch: int) -> Tensor:
    """The latent code of every example of ``x`` (raw data: levels on images), ``(N, L)``: the model's
    :meth:`~vaeflow.models.DensityModel.latent` of its input (``x + u``, ``u ~ U[0,1)`` from
    ``generator``, for a continuous model on images; ``x`` otherwise)."""
    out = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        z = model.latent(model_input(xb, levels, model.discrete, generator), generator)
        out.append(z.reshape(len(xb), -1))
    return torch.cat(out)


@torch.no_grad()
def decode(model: DensityModel, z: Tensor, levels: int | None, batch: int) -> Tensor:
    """Images ``(N, *data_shape)`` from latents ``z (N, L)`` in batches, by the model's
    :meth:`~vaeflow.models.DensityModel.from_latent`: a VAE's decoder mean rounded to the nearest
    level, a flow's ``floor(clamp(f⁻¹(z), 0, K-1))``; real vectors unrounded."""
    out = []
    for start in range(0, len(z), batch):
        zb = z[start : start + batch]
        out.append(model.from_latent(zb).reshape(len(zb), *model.data_shape))
    return torch.cat(out)


def _caps(name: str, image: bool, s: dict[str, Any]) -> tuple[int, int]:
    if image and name in s["slow_models"]:
        return s["max_train_slow"], s["max_test_slow"]
    return s["max_train"], s["max_test"]


def _labels(data: PreparedDataset, split: str, n: int) -> np.ndarray:
    y = data.labels(split)
    return np.full(n, -1, dtype=np.int64) if y is None else np.asarray(y[:n], dtype=np.int64)


def probe(model: DensityModel, data: PreparedDataset, settings: dict[str, Any], others: dict) -> dict[str, np.ndarray]:
    """Latents, labels, inputs, activity, and (images) interpolations and VAE traversals of one run."""
    started = time.perf_counter()
    s = check_settings(settings)
    model.eval()
    name = model_name(model)
    image = data.levels is not None
    levels = data.levels
    if "seed" not in settings:
        raise ValueError(
            "latents probe: settings lack 'seed' (the evaluation seed that fixes the dequantisation "
            "noise); vaeflow.config.probe_settings adds it, pass it when calling the probe by hand"
        )
    seed = int(settings["seed"])
    generator = torch.Generator().manual_seed(seed)
    batch = s["batch_size"]
    n_train, n_test = _caps(name, image, s)
    n_train, n_test = min(n_train, len(data.train)), min(n_test, len(data.test))
    if n_train < 2 or n_test < 1:
        raise ValueError(
            f"latents probe: dataset {data.name!r} gives {n_train} train and {n_test} test examples; "
            "the probe needs at least 2 and 1"
        )
    device = model.device
    x_train = to_tensor(data.train[:n_train]).to(device)
    x_test = to_tensor(data.test[:n_test]).to(device)
    z_train = latents(model, x_train, levels, generator, batch).cpu().double()
    z_test = latents(model, x_test, levels, generator, batch).cpu().double()
    for split, z in (("train", z_train), ("test", z_test)):
        if not torch.isfinite(z).all():
            bad = int((~torch.isfinite(z)).any(1).sum())
            raise ValueError(
                f"latents probe: {name} on {data.name}: {bad} {split} latents are not finite; "
                "the model's density direction overflowed (retrain it or leave it out of the study)"
            )
    activity = z_test.var(0, unbiased=True) if n_test > 1 else torch.zeros(z_test.shape[1], dtype=torch.float64)
    labelled = data.train_labels is not None and data.test_labels is not None
    input_dtype = np.uint8 if image and levels <= 256 else np.float32
    arrays: dict[str, np.ndarray] = {
        "model": np.array(name),
        "dataset": np.array(data.name),
        "kind": np.array(model.latent_kind),
        "latent_source": np.array(model.latent_source),
        "latent_dim": np.array(z_train.shape[1], dtype=np.int64),
        "num_dims": np.array(data.num_dims, dtype=np.int64),
        "levels": np.array(0 if levels is None else levels, dtype=np.int64),
        "labelled": np.array(int(labelled), dtype=np.int64),
        "train_latents": z_train.numpy().astype(np.float32),
        "test_latents": z_test.numpy().astype(np.float32),
        "train_labels": _labels(data, "train", n_train),
        "test_labels": _labels(data, "test", n_test),
        "train_inputs": np.asarray(data.train[:n_train]).reshape(n_train, -1).astype(input_dtype),
        "test_inputs": np.asarray(data.test[:n_test]).reshape(n_test, -1).astype(input_dtype),
        "activity": activity.numpy(),
    }

    if image:
        pairs = pair_indices(data.test_labels, s["interpolation_pairs"], len(data.test))
        ends = to_tensor(data.test[pairs.reshape(-1)]).to(device)
        z_ends = latents(model, ends, levels, generator, batch).reshape(len(pairs), 2, -1)
        alphas = torch.linspace(0.0, 1.0, s["interpolation_steps"], dtype=z_ends.dtype)
        path = torch.cat([interpolate(za, zb, alphas, s["interpolation"]) for za, zb in z_ends])
        images = decode(model, path, levels, batch).reshape(len(pairs), len(alphas), *model.data_shape)
        arrays.update(
            interp_index=pairs,
            interp_labels=(
                np.asarray(data.test_labels)[pairs] if data.test_labels is not None else np.full(pairs.shape, -1)
            ).astype(np.int64),
            interp_alphas=alphas.double().numpy(),
            interp_method=np.array(s["interpolation"]),
            interp_originals=np.asarray(data.test[pairs.reshape(-1)], dtype=np.float32).reshape(
                len(pairs), 2, *model.data_shape
            ),
            interp_images=images.cpu().float().numpy(),
        )
        if model.latent_kind == "vae" and s["traversal_dims"] > 0:
            base_index = int(pairs[0, 0])
            base = latents(
                model, to_tensor(data.test[base_index : base_index + 1]).to(device), levels, generator, batch
            )[0]
            dims = torch.argsort(activity, descending=True, stable=True)[: s["traversal_dims"]]
            values = torch.linspace(-s["traversal_range"], s["traversal_range"], s["traversal_steps"], dtype=base.dtype)
            grid = base.repeat(len(dims), len(values), 1)
            for row, dim in enumerate(dims.tolist()):
                grid[row, :, dim] = values
            images = decode(model, grid.reshape(-1, base.numel()), levels, batch)
            arrays.update(
                traversal_index=np.array(base_index, dtype=np.int64),
                traversal_dims=dims.numpy().astype(np.int64),
                traversal_values=values.double().numpy(),
                traversal_original=np.asarray(data.test[base_index], dtype=np.float32),
                traversal_images=images.reshape(len(dims), len(values), *model.data_shape).cpu().float().numpy(),
            )
    arrays["seconds"] = np.array(time.perf_counter() - started)
    return arrays


__all__ = ["probe", "interpolate", "pair_indices", "latents", "decode", "check_settings"]
