"""Anomaly probe: per-example likelihood scores of in-distribution and out-of-distribution images.

For one trained image run this scores, exactly as evaluation does
(:func:`vaeflow.evaluation.evaluate._per_example`: the same dequantisation noise generator
and seed for flows, the model's own bound and its importance-weighted form with ``iwae_k``
draws for models whose likelihood is a bound),

* ``train``: a random subset of the training split (for the typicality test's entropy
  estimate ``Ĥ``, Nalisnick et al. 2019);
* ``test``: a random subset of the in-distribution test split (the negatives), at most
  ``max_examples`` (``max_examples_slow`` for the models in ``slow_models``) images, in random
  order (so consecutive examples form random batches for the batch typicality test). Every
  subset is the first ``n`` of ``numpy.random.default_rng(seed).permutation`` (one generator,
  drawn in the order train, test, other datasets by name, then the synthetic sets), so all
  models of a dataset see the same images;
* the out-of-distribution sets (the positives), each at most as many images as ``test`` (the
  same number where the source has enough, so AUPR's chance level is about ½):

  - every *other image dataset* of the study (``others``), brought to this dataset's form
    by :func:`to_target_form`: first the channels, where they differ (RGB to grey by ITU-R
    BT.601 luma ``round(0.299 R + 0.587 G + 0.114 B)``, :func:`vaeflow.data.cifar_pickle.luma`,
    exactly what the cifar10 ``grey`` option does; grey to RGB by repeating the channel); then
    levels become intensities ``v = x/(K_src-1) ∈ [0, 1]``, are resized to this dataset's
    ``H x W`` by bilinear interpolation with antialiasing
    (:func:`torch.nn.functional.interpolate`, ``antialias=True``: an area-like average when
    shrinking, bilinear when enlarging), and are mapped to this dataset's ``K`` levels by
    ``round(v·(K-1))`` (black stays 0, white stays ``K-1``, grey scales linearly). What was
    done to each set is recorded in words (:func:`describe_conversion`). A dataset whose
    channel count has no defined conversion (neither 1 nor 3 channels on either side) is not
    scored but recorded as skipped, with the reason; datasets that are not images (no levels)
    are no OOD candidates at all;
  - synthetic sets made from the in-distribution test subset: ``noise`` (every pixel uniform
    on ``{0..K-1}``, independently), ``constant`` (each image one level drawn uniformly on
    ``{0..K-1}``), ``inverted`` (``K-1-x``) and ``flipped`` (upside down: rows reversed).

and the compressed length in bits of every scored image (:func:`compressed_bits`: PNG via
Pillow at compression level 9, or zlib level 9 of the raw level bytes), the ``L(x)`` of the
complexity-corrected score of Serrà et al. 2020, ``S(x) = -log2 p(x) - L(x)``.

Arrays written (``E`` scored examples in all, ``S`` score kinds, ``C`` compressors):

* ``sets`` (str), ``set_roles`` (str: ``train`` / ``in`` / ``ood``), ``set_kinds`` (str:
  ``split`` / ``dataset`` / ``synthetic``), ``set_seconds`` (scoring time per set),
  ``set_conversions`` (str: how each set was brought to the model's input form, e.g.
  ``RGB→grey (ITU-R BT.601 luma); resized 32×32→28×28 (antialiased bilinear)``; ``as is`` for
  the splits, the synthetic sets and a dataset already in this form);
* ``skipped_sets``, ``skipped_reasons`` (str, possibly empty): other image datasets that could
  not be brought to this form, and why;
* ``set_index`` (E,) int: which set each example belongs to;
* ``score_names`` (S,) str: ``log_p`` for exact models; ``bound`` and ``iw_bound`` for models
  whose likelihood is a bound (VAEs: ELBO / IWAE-k; Flow++: the variational-dequantisation
  bound / IW-k); ``score_labels`` (S,) str: the model's own names with k;
* ``bits_per_dim`` (S, E) float64: ``-log_prob / (D ln 2)``. **May hold +inf or NaN**: a
  model whose log-likelihood is ``-inf`` (or NaN, an overflow) on an input is kept as is and
  counted by the analysis, which ranks it as the most anomalous score (the model has
  rejected the input); nothing is dropped;
* ``compressors`` (C,) str, ``compressed_bits`` (C, E) float64: ``L(x)`` in bits (finite);
* ``levels``, ``num_dims``, ``iwae_k``, ``dequantization_draws``, ``exact``, ``seconds``,
  ``max_examples`` (the cap used for this run: smaller for the slow models).
"""

from __future__ import annotations

import io
import math
import time
import zlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vaeflow.data import PreparedDataset
from vaeflow.data.cifar_pickle import luma
from vaeflow.data.dequantization import to_tensor
from vaeflow.evaluation.bits import bits_per_dim
from vaeflow.evaluation.evaluate import _per_example
from vaeflow.models import MODELS, DensityModel
from vaeflow.probes import model_name

SYNTHETIC_SETS: tuple[str, ...] = ("noise", "constant", "inverted", "flipped")
COMPRESSORS: tuple[str, ...] = ("png", "zlib")
#: the conversion of a set that needed none
AS_IS = "as is"
#: channel conversions (source channels, target channels) -> what :func:`to_target_form` does, in words
CHANNEL_CONVERSIONS: dict[tuple[int, int], str] = {
    (3, 1): "RGB→grey (ITU-R BT.601 luma)",
    (1, 3): "grey→RGB (channel repeated)",
}
REQUIRED_SETTINGS: dict[str, type] = {
    "max_examples": int,
    "max_examples_slow": int,
    "slow_models": list,
    "train_examples": int,
    "iwae_k": int,
    "dequantization_draws": int,
    "batch_size": int,
    "compressors": list,
}


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The probe's settings, checked: every key present, the right type, positive; compressors known."""
    missing = [key for key in REQUIRED_SETTINGS if key not in settings]
    if missing:
        raise ValueError(
            f"analyses.anomaly is missing {', '.join(missing)}; add them to the config "
            f"(see vaeflow.probes.anomaly and config/config.yaml)"
        )
    for key, kind in REQUIRED_SETTINGS.items():
        value = settings[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"analyses.anomaly.{key} must be a positive integer, got {value!r}")
        if kind is list and not isinstance(value, (list, tuple)):
            raise ValueError(f"analyses.anomaly.{key} must be a list, got {value!r}")
    unknown_models = [m for m in settings["slow_models"] if m not in MODELS]
    if unknown_models:
        raise ValueError(
            f"analyses.anomaly.slow_models names unknown models {unknown_models}; known: {', '.join(MODELS)}"
        )
    unknown = [c for c in settings["compressors"] if c not in COMPRESSORS]
    if unknown or not settings["compressors"]:
        raise ValueError(
            f"analyses.anomaly.compressors must be a non-empty list of {', '.join(COMPRESSORS)}; "
            f"got {settings['compressors']!r}"
        )
    return settings


class UnconvertibleError(ValueError):
    """Images whose channel count cannot be brought to the in-distribution data's."""


def _check_forms(source_shape: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """Raise :class:`UnconvertibleError` unless the channels match or are grey/RGB (1/3) on both sides."""
    if len(source_shape) != 3 or len(shape) != 3:
        raise ValueError(f"expected image shapes (C, H, W), got {tuple(source_shape)} and {tuple(shape)}")
    pair = (int(source_shape[0]), int(shape[0]))
    if pair[0] != pair[1] and pair not in CHANNEL_CONVERSIONS:
        raise UnconvertibleError(
            f"{pair[0]}-channel images cannot be brought to the model's {pair[1]} channels: only grey (1) and "
            f"RGB (3) are converted into each other"
        )


def describe_conversion(source_shape: tuple[int, ...], source_levels: int, shape: tuple[int, ...], levels: int) -> str:
    """In words, what :func:`to_target_form` does to ``source_shape`` (C, H, W) images of ``source_levels``
    levels to give ``shape`` with ``levels`` levels: the channel conversion, the resizing, the level mapping,
    ``"; "``-joined (:data:`AS_IS` when nothing). :class:`UnconvertibleError` for channels it cannot convert."""
    _check_forms(source_shape, shape)
    steps = []
    if source_shape[0] != shape[0]:
        steps.append(CHANNEL_CONVERSIONS[(int(source_shape[0]), int(shape[0]))])
    if tuple(source_shape[1:]) != tuple(shape[1:]):
        steps.append(f"resized {source_shape[1]}×{source_shape[2]}→{shape[1]}×{shape[2]} (antialiased bilinear)")
    if int(source_levels) != int(levels):
        steps.append(f"{source_levels}→{levels} levels")
    return "; ".join(steps) or AS_IS


def to_target_form(images: np.ndarray, source_levels: int, shape: tuple[int, ...], levels: int) -> np.ndarray:
    """Images of ``source_levels`` levels as uint8 images of ``shape`` (C, H, W) with ``levels`` levels.

    Channels first, on the source levels: RGB to grey by BT.601 luma (:func:`vaeflow.data.cifar_pickle.luma`,
    as the cifar10 ``grey`` option), grey to RGB by repeating the channel; other channel counts raise
    :class:`UnconvertibleError`. Then intensity ``v = x/(K_src-1)``, resized by antialiased bilinear
    interpolation, and ``round(v·(K-1))`` clipped to ``[0, K-1]``. :func:`describe_conversion` says the same
    in words.
    """
    if images.ndim != 4 or len(shape) != 3:
        raise ValueError(
            f"to_target_form: expected images (N, C, H, W) and a shape (C, H, W), got {images.shape} and {shape}"
        )
    _check_forms(images.shape[1:], shape)
    if (images.shape[1], shape[0]) == (3, 1):
        images = luma(images)  # uint8 levels, as every prepared image dataset stores them
    elif (images.shape[1], shape[0]) == (1, 3):
        images = np.repeat(images, 3, axis=1)
    intensity = torch.from_numpy(images.astype(np.float64)) / (source_levels - 1)
    if tuple(images.shape[2:]) != tuple(shape[1:]):
        intensity = F.interpolate(
            intensity, size=tuple(shape[1:]), mode="bilinear", align_corners=False, antialias=True
        )
    mapped = torch.round(intensity.clamp(0.0, 1.0) * (levels - 1))
    return mapped.numpy().astype(np.uint8)


def synthetic_set(name: str, test: np.ndarray, levels: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic out-of-distribution images the size of ``test`` (uint8 levels in ``{0..K-1}``)."""
    if name == "noise":
        return rng.integers(0, levels, size=test.shape, dtype=np.int64).astype(np.uint8)
    if name == "constant":
        values = rng.integers(0, levels, size=len(test), dtype=np.int64).astype(np.uint8)
        return np.broadcast_to(values.reshape(-1, *([1] * (test.ndim - 1))), test.shape).copy()
    if name == "inverted":
        return (levels - 1 - test.astype(np.int64)).astype(np.uint8)
    if name == "flipped":
        return np.ascontiguousarray(test[..., ::-1, :])
    raise ValueError(f"unknown synthetic set {name!r}; known: {', '.join(SYNTHETIC_SETS)}")


def compressed_bits(images: np.ndarray, compressor: str) -> np.ndarray:
    """Length in bits of each image (C, H, W uint8 levels) compressed losslessly.

    ``png``: Pillow's PNG encoder (compression level 9) on the grey image of level values
    (one image per channel, lengths summed); ``zlib``: :func:`zlib.compress` level 9 of the raw
    level bytes. Both include their fixed headers (a constant, irrelevant to rankings).
    """
    if compressor not in COMPRESSORS:
        raise ValueError(f"unknown compressor {compressor!r}; use one of {', '.join(COMPRESSORS)}")
    images = np.ascontiguousarray(images, dtype=np.uint8)
    out = np.empty(len(images), dtype=np.float64)
    if compressor == "zlib":
        for i, image in enumerate(images):
            out[i] = 8 * len(zlib.compress(image.tobytes(), 9))
        return out
    from PIL import Image

    for i, image in enumerate(images):
        total = 0
        for channel in image:
            buffer = io.BytesIO()
            Image.fromarray(channel, mode="L").save(buffer, format="PNG", compress_level=9)
            total += len(buffer.getvalue())
        out[i] = 8 * total
    return out


def _scores(model: DensityModel, images: np.ndarray, levels: int, settings: dict[str, Any]) -> np.ndarray:
    """(S, N) bits/dim of ``images``: exact log p, or the bound and its importance-weighted form."""
    x = to_tensor(images).to(model.device)
    draws = settings["dequantization_draws"] if (model.exact and not model.discrete) else 1
    common = dict(levels=levels, draws=draws, seed=int(settings["seed"]), batch=int(settings["batch_size"]))
    rows = [_per_example(model, x, score="log_prob", **common)]
    if not model.exact:
        rows.append(_per_example(model, x, score="bound", k=int(settings["iwae_k"]), **common))
    return np.stack([bits_per_dim(r.numpy(), model.num_dims) for r in rows]).astype(np.float64)


def probe(
    model: DensityModel, data: PreparedDataset, settings: dict[str, Any], others: dict[str, PreparedDataset]
) -> dict[str, np.ndarray]:
    """Score train/test subsets and every out-of-distribution set; see the module docstring."""
    settings = check_settings(settings)
    if data.levels is None or data.train.ndim != 4:
        raise ValueError(
            f"the anomaly probe needs image data (N, C, H, W) with levels; dataset {data.name!r} has "
            f"examples {data.example_shape} and levels {data.levels}. vaeflow.probes.applies excludes such runs."
        )
    model.eval()
    levels, shape = int(data.levels), data.example_shape
    slow = model_name(model) in settings["slow_models"]
    cap = int(settings["max_examples_slow"] if slow else settings["max_examples"])
    n_train = min(int(settings["train_examples"]), cap, len(data.train))
    rng = np.random.default_rng(int(settings["seed"]))
    train = data.train[rng.permutation(len(data.train))[:n_train]]
    test = data.test[rng.permutation(len(data.test))[:cap]]
    sets: list[tuple[str, str, str, np.ndarray, str]] = [
        ("train", "train", "split", train, AS_IS),
        ("test", "in", "split", test, AS_IS),
    ]
    skipped: list[tuple[str, str]] = []
    for name in sorted(others):
        other = others[name]
        if name == data.name or other.levels is None or other.train.ndim != 4:
            continue  # the in-distribution data itself, or not images
        # drawn before any skip, so a skipped set leaves the images of the later sets unchanged
        chosen = other.test[rng.permutation(len(other.test))[: len(test)]]
        try:
            how = describe_conversion(other.example_shape, int(other.levels), shape, levels)
        except UnconvertibleError as err:
            skipped.append((name, f"{name} {tuple(other.example_shape)} vs {data.name} {tuple(shape)}: {err}"))
            continue
        sets.append((name, "ood", "dataset", to_target_form(chosen, int(other.levels), shape, levels), how))
    for name in SYNTHETIC_SETS:
        sets.append((name, "ood", "synthetic", synthetic_set(name, test, levels, rng), AS_IS))

    started = time.perf_counter()
    scores, index, seconds, lengths = [], [], [], []
    for i, (_, _, _, images, _) in enumerate(sets):
        t0 = time.perf_counter()
        scores.append(_scores(model, images, levels, settings))
        seconds.append(time.perf_counter() - t0)
        index.append(np.full(len(images), i, dtype=np.int64))
        lengths.append(np.stack([compressed_bits(images, c) for c in settings["compressors"]]))
    if model.exact:
        estimator = f" ({model.density_estimator})" if model.density_estimator else ""
        names, labels = ["log_p"], [f"exact log p{estimator}"]
    else:
        k = int(settings["iwae_k"])
        names, labels = ["bound", "iw_bound"], [model.bound_name, f"{model.importance_weighted_name}-{k}"]
    draws = settings["dequantization_draws"] if (model.exact and not model.discrete) else 1
    return {
        "sets": np.array([s[0] for s in sets]),
        "set_roles": np.array([s[1] for s in sets]),
        "set_kinds": np.array([s[2] for s in sets]),
        "set_seconds": np.array(seconds, dtype=np.float64),
        "set_conversions": np.array([s[4] for s in sets]),
        "skipped_sets": np.array([name for name, _ in skipped], dtype=str),
        "skipped_reasons": np.array([reason for _, reason in skipped], dtype=str),
        "set_index": np.concatenate(index),
        "score_names": np.array(names),
        "score_labels": np.array(labels),
        "bits_per_dim": np.concatenate(scores, axis=1),
        "compressors": np.array(list(settings["compressors"])),
        "compressed_bits": np.concatenate(lengths, axis=1),
        "levels": np.array(levels),
        "num_dims": np.array(math.prod(shape)),
        "iwae_k": np.array(int(settings["iwae_k"]) if not model.exact else 0),
        "dequantization_draws": np.array(int(draws)),
        "exact": np.array(bool(model.exact)),
        "max_examples": np.array(cap),
        "seconds": np.array(time.perf_counter() - started),
    }
