"""High-frequency detail of generated images, and likelihood-based inpainting and 2x super-resolution.

Spectra (numpy.fft). An image ``x`` of ``K`` levels is scaled to ``x/(K-1) ∈ [0, 1]``, its own
mean is removed, and its power spectrum is ``P(f) = |F(f)|²/(H·W)`` with ``F`` the 2-D DFT
(summed over channels, each channel with its own mean removed), so that by Parseval
``Σ_f P(f) = Σ_channels Σ_pixels (x - x̄)²``: for RGB images the energy of the R, G and B planes
together, so a high-frequency fraction ``Σ E_hf / Σ E`` is the channels' fractions weighted by their
energy, and samples are only ever compared with test images of the same dataset (same channels).
Frequencies ``f = (f_y, f_x)`` are in cycles/pixel, ``|f| = sqrt(f_y² + f_x²) ∈ [0, 0.5·√2]``.

* *Radial power spectrum*: ``S(k) = mean{P(f) : round(|f|·N) = k}``, ``N = min(H, W)``,
  ``k = 0 … N/2`` (bin centres ``k/N`` cycles/pixel; the corners beyond ``|f| > (N/2 + ½)/N``
  are left out of the radial profile only). ``S(0) = 0`` after mean removal.
* *High-frequency power*: ``E_hf = Σ_{|f| > cutoff} P(f)``; *total power* ``E = Σ_f P(f)``. The
  analysis pools them over images, ``Σ E_hf / Σ E``, the fraction of spectral energy above the
  cutoff, which stays defined for a constant image (``E = 0``).

Image sets per run (``set_name``): ``data`` (the test split), ``samples`` (``model.sample`` at
each temperature: the flows, Flow++ included, at every ``temperatures`` value, VAEs at ``T = 1``),
and for the VAEs ``decoder_mean`` (the decoder's location ``clamp(μ(z), 0, K-1)`` for
``z ~ N(0, I)``: the smooth image VAE papers usually show), ``reconstruction_mean`` and
``reconstruction_sample`` (``z ~ q(z|x)`` for each test image ``x``, then the decoder's location,
or ``x' ~ p(x|z)``). Samples that are not finite (an unstable flow's inverse overflowing) are
dropped and counted in ``set_nonfinite``; nothing non-finite is stored.

Completion (models of ``completion_models``, on ``completion_examples`` test images chosen with
the settings' seed, the same for every run of a dataset). Two tasks: ``inpaint_<mask>`` (the
``centre`` square of half the side, or the ``lower_half``, missing) and ``superres_2x`` (only the
pixel at the top-left of every 2x2 block observed: 2x decimation). The missing pixels are a
continuous relaxation, ``(K-1)·sigmoid(a)`` for a discrete model (the VAE's discretised
logistic evaluated at non-integer ``x`` is the mass of ``[x-½, x+½]``) or ``K·sigmoid(a)`` for a
flow's dequantised input (observed pixels at their bin centres ``x + ½``), and ``a`` follows
Adam on ``-objective``: the flow's exact ``log p(y)``, or the VAE's IWAE-k with fresh draws per
step. The optimisation starts from the baseline: the per-pixel mean of the training images
(inpainting) or separable linear interpolation of the observed lattice (super-resolution). The
completion is read back in level units (flows: ``y - ½``), clamped to ``[0, K-1]`` and not
rounded; the baseline is stored beside it.

Settings (``analyses.high_frequency``; every key is required, see :data:`SETTINGS`):
``cutoff`` (cycles/pixel), ``samples`` (per run at ``T = 1``), ``temperatures``,
``temperature_samples`` (per run at each ``T ≠ 1``), ``slow_models`` and ``max_samples_slow``
(a cap on every sample set of the models whose sampling is slow: MAF samples sequentially, FFJORD
solves an ODE, Flow++ inverts mixture CDFs by bisection), ``batch_size``, ``grid_samples``,
``completion_models``, ``completion_examples``, ``completion_steps``, ``completion_lr``,
``completion_iwae_k``, ``inpaint_mask``, ``completions_shown``; the notebook's own keys
(:data:`NOTEBOOK_KEYS`) share the block and are ignored here.

Arrays: ``levels``, ``cutoff``, ``radial_frequency (R,)``; per set (S): ``set_name``,
``set_temperature`` (NaN for sets not drawn at a temperature), ``set_requested``,
``set_nonfinite``; per image over all sets (M): ``image_set`` (index into the sets),
``radial (M, R)``, ``hf_power (M,)``, ``total_power (M,)``; ``grid (G, C, H, W)`` levels with
``grid_set (G,)`` (every channel kept: RGB grids stay in colour); per completion task (Q):
``task_name``, ``task_missing (Q, H, W)`` (both masks hide a pixel in every channel); for the
methods ``completion_method = [baseline, model]`` (2) and the images (n): ``completion_mse (Q, 2, n)``
(over the missing pixels, on the ``[0, 1]`` scale), ``completion_hf_power (Q, 2, n)``,
``completion_residual_hf_power (Q, 2, n)`` (high-frequency power of completion − truth),
``completion_objective (Q, 2, n)`` (nats, named in ``objective_name``), ``truth_hf_power (n,)``,
``completion_shown (Q, 2, E, C, H, W)`` and ``truth_shown (E, C, H, W)``. Runs outside
``completion_models`` have ``Q = 0``. ``seconds (2,)``: wall time of the sampling, and of the
spectra and completions (for the cost table). ``latent_kind`` (0-d str): the model's
``latent_kind`` ("vae": the run has the decoder sets; "flow"), so the analysis reads what kind of
model a run is from the run rather than from a list of names. Every stored number is finite except
``set_temperature``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from vaeflow.data import PreparedDataset
from vaeflow.data.dequantization import to_tensor
from vaeflow.models import MODELS, DensityModel
from vaeflow.models.distributions import discretized_logistic_sample
from vaeflow.probes import NOTEBOOK_KEYS as REGISTRY_NOTEBOOK_KEYS
from vaeflow.probes import model_name

#: the probe's settings and their types (all required in ``analyses.high_frequency``)
SETTINGS: dict[str, type] = {
    "cutoff": float,
    "samples": int,
    "temperatures": list,
    "temperature_samples": int,
    "slow_models": list,
    "max_samples_slow": int,
    "batch_size": int,
    "grid_samples": int,
    "completion_models": list,
    "completion_examples": int,
    "completion_steps": int,
    "completion_lr": float,
    "completion_iwae_k": int,
    "inpaint_mask": str,
    "completions_shown": int,
}

#: keys of the same block that only the notebook reads (see vaeflow.analysis.high_frequency)
NOTEBOOK_KEYS = REGISTRY_NOTEBOOK_KEYS["high_frequency"]

MASKS = ("centre", "lower_half")
METHODS = ("baseline", "model")


def completion_capable() -> list[str]:
    """The registry's models that can complete images (their ``can_complete``: an objective
    differentiable in a continuous input; IAF's and FFJORD's are, but slowly)."""
    return [name for name, cls in MODELS.items() if cls.can_complete]


# --- settings ------------------------------------------------------------------------------------


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with their types checked; a missing, unknown or ill-typed key raises ValueError naming it."""
    where = "analyses.high_frequency"
    missing = sorted(set(SETTINGS) - set(settings))
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}; add them to the config (see the probe's docstring)")
    unknown = sorted(set(settings) - set(SETTINGS) - NOTEBOOK_KEYS - {"seed"})
    if unknown:
        raise ValueError(
            f"{where} has unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(SETTINGS) + sorted(NOTEBOOK_KEYS))}"
        )
    out = dict(settings)
    for key, kind in SETTINGS.items():
        value = settings[key]
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
        elif kind is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            out[key] = int(value)
        elif kind in (list, str) and isinstance(value, kind):
            pass
        else:
            raise ValueError(f"{where}.{key} must be a {kind.__name__}, got {value!r}")
    for key in ("samples", "temperature_samples", "max_samples_slow"):
        if out[key] < 2:
            raise ValueError(f"{where}.{key} must be at least 2 (a spectrum needs images), got {out[key]}")
    for key in ("batch_size", "completion_iwae_k"):
        if out[key] < 1:
            raise ValueError(f"{where}.{key} must be a positive integer, got {out[key]}")
    for key in ("grid_samples", "completion_examples", "completion_steps", "completions_shown"):
        if out[key] < 0:
            raise ValueError(f"{where}.{key} must be >= 0, got {out[key]}")
    if not 0.0 < out["cutoff"] < 0.5 * math.sqrt(2.0):
        raise ValueError(f"{where}.cutoff must lie in (0, 0.707) cycles/pixel (Nyquist is 0.5), got {out['cutoff']}")
    temps = out["temperatures"]
    if not temps or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in temps):
        raise ValueError(f"{where}.temperatures must be a non-empty list of positive numbers, got {temps!r}")
    out["temperatures"] = sorted({float(t) for t in temps} | {1.0})
    if out["inpaint_mask"] not in MASKS:
        raise ValueError(f"{where}.inpaint_mask must be one of {', '.join(MASKS)}, got {out['inpaint_mask']!r}")
    capable = completion_capable()
    unsupported = sorted(set(out["completion_models"]) - set(capable))
    if unsupported:
        raise ValueError(
            f"{where}.completion_models lists {', '.join(map(str, unsupported))}, which cannot complete "
            f"images by gradient ascent on log p (can_complete is False: Flow++'s bound needs integer "
            f"levels); use some of {', '.join(capable)}"
        )
    if not out["completion_lr"] > 0:
        raise ValueError(f"{where}.completion_lr must be positive, got {out['completion_lr']}")
    return out


# --- spectra (numpy only) ------------------------------------------------------------------------


def frequency_radius(height: int, width: int) -> np.ndarray:
    """``|f|`` in cycles/pixel of every DFT coefficient of an ``H x W`` image, shape ``(H, W)``."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    return np.sqrt(fy**2 + fx**2)


def radial_bins(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Radial bin of every coefficient (``-1``: a corner outside the profile) and the bin centres ``k/N``."""
    n = min(height, width)
    index = np.rint(frequency_radius(height, width) * n).astype(int)
    count = n // 2 + 1
    index[index >= count] = -1
    return index, np.arange(count) / n


def power_spectrum(images: np.ndarray, levels: int) -> np.ndarray:
    """``|DFT(x/(K-1) - mean)|²/(H·W)`` summed over channels: ``(N, C, H, W)`` (or ``(N, H, W)``) to ``(N, H, W)``."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"power_spectrum expects images (N, C, H, W) or (N, H, W), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("power_spectrum got non-finite pixels; drop non-finite samples before computing spectra")
    x = x / (levels - 1)
    x = x - x.mean(axis=(2, 3), keepdims=True)
    height, width = x.shape[2:]
    return (np.abs(np.fft.fft2(x)) ** 2).sum(axis=1) / (height * width)


def radial_spectrum(power: np.ndarray) -> np.ndarray:
    """Mean power per radial bin: ``(N, H, W)`` to ``(N, R)``."""
    index, centres = radial_bins(*power.shape[1:])
    flat = power.reshape(len(power), -1)
    onehot = (index.reshape(-1, 1) == np.arange(len(centres))[None, :]).astype(np.float64)
    return flat @ (onehot / onehot.sum(axis=0, keepdims=True))


def high_frequency_power(power: np.ndarray, cutoff: float) -> np.ndarray:
    """``Σ_{|f| > cutoff} P(f)`` per image, ``(N,)``."""
    mask = frequency_radius(*power.shape[1:]) > cutoff
    return power[:, mask].sum(axis=1)


def spectral_summary(images: np.ndarray, levels: int, cutoff: float) -> dict[str, np.ndarray]:
    """Per image: radial spectrum ``(N, R)``, high-frequency power and total power ``(N,)``."""
    power = power_spectrum(images, levels)
    return {
        "radial": radial_spectrum(power),
        "hf_power": high_frequency_power(power, cutoff),
        "total_power": power.reshape(len(power), -1).sum(axis=1),
    }


# --- completion tasks ----------------------------------------------------------------------------


def inpaint_mask(shape: tuple[int, int, int], which: str) -> np.ndarray:
    """Missing pixels (True) of ``(C, H, W)``: the centre square of side ``⌊H/2⌋ x ⌊W/2⌋`` or the lower half."""
    channels, height, width = shape
    mask = np.zeros(shape, dtype=bool)
    if which == "centre":
        h, w = height // 2, width // 2
        top, left = (height - h) // 2, (width - w) // 2
        mask[:, top : top + h, left : left + w] = True
    elif which == "lower_half":
        mask[:, height // 2 :, :] = True
    else:
        raise ValueError(f"unknown inpainting mask {which!r}; use one of {', '.join(MASKS)}")
    return mask


def decimation_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """Missing pixels of 2x decimation: all but the top-left pixel of every 2x2 block (even row and column)."""
    mask = np.ones(shape, dtype=bool)
    mask[:, ::2, ::2] = False
    return mask


def _interpolation_matrix(size: int) -> np.ndarray:
    """``(size, ⌈size/2⌉)``: linear interpolation from the even positions, constant beyond the last one."""
    known = np.arange(0, size, 2)
    eye = np.eye(len(known))
    return np.stack([np.interp(np.arange(size), known, eye[j]) for j in range(len(known))], axis=1)


def linear_upsample(images: np.ndarray) -> np.ndarray:
    """Bilinear completion of 2x-decimated images ``(N, C, H, W)`` from their even-indexed pixels."""
    x = np.asarray(images, dtype=np.float64)
    rows, cols = _interpolation_matrix(x.shape[2]), _interpolation_matrix(x.shape[3])
    return np.einsum("ij,ncjk,lk->ncil", rows, x[:, :, ::2, ::2], cols)


def complete(
    model: DensityModel,
    truth: torch.Tensor,
    missing: torch.Tensor,
    start: torch.Tensor,
    steps: int,
    lr: float,
    iwae_k: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximise the model's objective over the missing pixels by Adam, the observed ones fixed.

    ``truth`` and ``start`` are ``(B, C, H, W)`` levels; ``missing`` a ``(C, H, W)`` bool mask.
    Returns the completion in levels (clamped to ``[0, K-1]``), and the objective (nats per image)
    at ``start`` and at the completion.
    """
    levels = int(model.levels)
    width, offset = (levels - 1.0, 0.0) if model.discrete else (float(levels), 0.5)
    observed = truth + offset
    fraction = ((start + offset) / width).clamp(1e-3, 1 - 1e-3)
    logits = torch.logit(fraction)[:, missing].clone().requires_grad_(True)

    def assemble(a: torch.Tensor) -> torch.Tensor:
        x = observed.clone()
        x[:, missing] = width * torch.sigmoid(a)
        return x

    def objective(x: torch.Tensor) -> torch.Tensor:
        return model.log_prob(x) if model.exact else model.log_prob_bound(x, iwae_k)

    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        with torch.no_grad():
            before = objective(assemble(logits))
        optimiser = torch.optim.Adam([logits], lr=lr)
        for _ in range(steps):
            optimiser.zero_grad()
            loss = -objective(assemble(logits)).sum()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            x = assemble(logits)
            after = objective(x)
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    return (x - offset).clamp(0, levels - 1), before, after


# --- sampling --------------------------------------------------------------------------------------


def draw(model: DensityModel, n: int, temperature: float, batch: int) -> tuple[np.ndarray, int]:
    """``n`` samples at ``temperature`` in batches; the finite ones ``(m, C, H, W)`` and the non-finite count."""
    chunks = []
    with torch.no_grad():
        for start in range(0, n, batch):
            chunks.append(model.sample(min(batch, n - start), temperature=temperature).cpu().numpy())
    samples = np.concatenate(chunks).astype(np.float64)
    finite = np.isfinite(samples.reshape(n, -1)).all(axis=1)
    return samples[finite], int((~finite).sum())


def _vae_sets(model: DensityModel, test: np.ndarray, n: int, batch: int) -> dict[str, np.ndarray]:
    """Decoder means of prior draws, and reconstructions (location and sample) of the test images."""
    levels = int(model.levels)
    shape = (-1, *model.data_shape)
    means, rec_means, rec_samples = [], [], []
    with torch.no_grad():
        for start in range(0, n, batch):
            z = torch.randn(min(batch, n - start), model.latent_dim)
            means.append(model.decode(z)[0].clamp(0, levels - 1).reshape(shape))
        x = to_tensor(test)
        for start in range(0, len(x), batch):
            posterior = model.posterior_parameters(x[start : start + batch])
            z, _ = model.posterior_sample(posterior, torch.randn_like(posterior[0]))
            mean, log_scale = model.decode(z)
            rec_means.append(mean.clamp(0, levels - 1).reshape(shape))
            rec_samples.append(discretized_logistic_sample(mean, log_scale, levels).reshape(shape))
    return {
        "decoder_mean": torch.cat(means).double().numpy(),
        "reconstruction_mean": torch.cat(rec_means).double().numpy(),
        "reconstruction_sample": torch.cat(rec_samples).double().numpy(),
    }


# --- the probe -------------------------------------------------------------------------------------


def _completion_arrays(
    model: DensityModel,
    data: PreparedDataset,
    s: dict[str, Any],
    name: str,
) -> dict[str, np.ndarray]:
    levels = int(data.levels)
    shape = tuple(data.test.shape[1:])
    tasks = [f"inpaint_{s['inpaint_mask']}", "superres_2x"]
    masks = [inpaint_mask(shape, s["inpaint_mask"]), decimation_mask(shape)]
    n = min(s["completion_examples"], len(data.test))
    shown = min(s["completions_shown"], n)
    if name not in s["completion_models"] or n == 0:
        c, h, w = shape
        return {
            "task_name": np.array([], dtype=str),
            "task_missing": np.zeros((0, h, w), dtype=bool),
            "completion_method": np.array(METHODS),
            "objective_name": np.array(""),
            **{
                key: np.zeros((0, 2, 0))
                for key in (
                    "completion_mse",
                    "completion_hf_power",
                    "completion_residual_hf_power",
                    "completion_objective",
                )
            },
            "truth_hf_power": np.zeros(0),
            "completion_shown": np.zeros((0, 2, 0, c, h, w)),
            "truth_shown": np.zeros((0, c, h, w)),
        }
    chosen = np.sort(np.random.default_rng(s["seed"]).choice(len(data.test), size=n, replace=False))
    truth = data.test[chosen].astype(np.float64)
    train_mean = data.train.astype(np.float64).mean(axis=0)
    baselines = [np.where(masks[0], train_mean, truth), np.where(masks[1], linear_upsample(truth), truth)]
    truth_t = torch.as_tensor(truth, dtype=torch.float32)
    mse, hf, residual_hf, objective, shown_images = [], [], [], [], []
    for mask, baseline in zip(masks, baselines):
        filled, before, after = complete(
            model,
            truth_t,
            torch.as_tensor(mask),
            torch.as_tensor(baseline, dtype=torch.float32),
            s["completion_steps"],
            s["completion_lr"],
            s["completion_iwae_k"],
        )
        results = [baseline, filled.double().numpy()]
        mse.append([(((r - truth) / (levels - 1)) ** 2)[:, mask].mean(axis=1) for r in results])
        hf.append([spectral_summary(r, levels, s["cutoff"])["hf_power"] for r in results])
        residual_hf.append([high_frequency_power(power_spectrum(r - truth, levels), s["cutoff"]) for r in results])
        objective.append([before.double().numpy(), after.double().numpy()])
        shown_images.append([r[:shown] for r in results])
    arrays = {
        "task_name": np.array(tasks),
        "task_missing": np.stack([m[0] for m in masks]),
        "completion_method": np.array(METHODS),
        "objective_name": np.array("exact log p(y)" if model.exact else f"IWAE-{s['completion_iwae_k']}"),
        "completion_mse": np.array(mse),
        "completion_hf_power": np.array(hf),
        "completion_residual_hf_power": np.array(residual_hf),
        "completion_objective": np.array(objective),
        "truth_hf_power": spectral_summary(truth, levels, s["cutoff"])["hf_power"],
        "completion_shown": np.array(shown_images),
        "truth_shown": truth[:shown],
    }
    bad = [key for key, value in arrays.items() if value.dtype.kind == "f" and not np.isfinite(value).all()]
    if bad:
        raise ValueError(
            f"high_frequency probe ({name}): non-finite completion values in {', '.join(bad)}; "
            "lower completion_lr or leave this model out of completion_models"
        )
    return arrays


def probe(model: DensityModel, data: PreparedDataset, settings: dict[str, Any], others: dict) -> dict[str, np.ndarray]:
    """Spectra of test images, samples (per temperature), VAE means and reconstructions; completions."""
    s = check_settings(settings)
    if data.levels is None or data.test.ndim != 4:
        raise ValueError(
            f"the high_frequency probe needs image data (N, C, H, W) with levels; dataset "
            f"{data.name!r} has shape {data.test.shape[1:]} and levels {data.levels}"
        )
    name = model_name(model)
    levels, batch = int(data.levels), s["batch_size"]
    cap = s["max_samples_slow"] if name in s["slow_models"] else None

    def count(n: int) -> int:
        return n if cap is None else min(n, cap)

    started = time.perf_counter()
    sets: list[tuple[str, float, int, int, np.ndarray]] = [
        ("data", math.nan, len(data.test), 0, data.test.astype(np.float64))
    ]
    temperatures = s["temperatures"] if model.temperature_sampling else [1.0]
    for t in temperatures:
        n = count(s["samples"] if t == 1.0 else s["temperature_samples"])
        images, bad = draw(model, n, t, batch)
        if len(images) < 2:
            raise ValueError(
                f"high_frequency probe ({name}, {data.name}): {bad} of {n} samples at T={t} are "
                "non-finite; too few to measure a spectrum"
            )
        sets.append(("samples", t, n, bad, images))
    if model.latent_kind == "vae":  # decoder means and reconstructions
        n = count(s["samples"])
        for set_name, images in _vae_sets(model, data.test[:n], n, batch).items():
            sets.append((set_name, 1.0 if set_name == "decoder_mean" else math.nan, len(images), 0, images))
    sampled = time.perf_counter()

    summaries = [spectral_summary(images, levels, s["cutoff"]) for *_, images in sets]
    t1 = next(i for i, st in enumerate(sets) if st[0] == "samples" and st[1] == 1.0)
    grid_sets = [0, t1] + [i for i, st in enumerate(sets) if st[0] == "decoder_mean"]
    grid = [sets[i][4][: s["grid_samples"]] for i in grid_sets]  # (g, C, H, W): RGB keeps its colour
    arrays: dict[str, np.ndarray] = {
        "latent_kind": np.array(model.latent_kind),
        "levels": np.array(levels),
        "cutoff": np.array(s["cutoff"]),
        "radial_frequency": radial_bins(*data.test.shape[2:])[1],
        "set_name": np.array([st[0] for st in sets]),
        "set_temperature": np.array([st[1] for st in sets]),
        "set_requested": np.array([st[2] for st in sets]),
        "set_nonfinite": np.array([st[3] for st in sets]),
        "image_set": np.concatenate([np.full(len(st[4]), i) for i, st in enumerate(sets)]),
        "radial": np.concatenate([sm["radial"] for sm in summaries]),
        "hf_power": np.concatenate([sm["hf_power"] for sm in summaries]),
        "total_power": np.concatenate([sm["total_power"] for sm in summaries]),
        "grid": np.concatenate(grid).astype(np.float32),
        "grid_set": np.concatenate([np.full(len(g), i) for i, g in zip(grid_sets, grid)]),
    }
    arrays.update(_completion_arrays(model, data, s, name))
    arrays["seconds"] = np.array([sampled - started, time.perf_counter() - sampled])
    return arrays
