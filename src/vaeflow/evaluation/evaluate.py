"""Test-set evaluation of a trained model: bits/dim with the right bound, samples, throughput.

Every headline test number on images is a lower bound on the same quantity, the discrete
log-likelihood ``log P(x)``, in its importance-weighted form with ``k`` draws (Burda et al. 2016),
labelled with its ``k``:

* models whose likelihood is a bound (VAEs; Flow++ with its variational dequantisation) report the
  single-draw bound and its importance-weighted form under the names the model gives them
  (ELBO / IWAE-k; variational-dequantisation bound / IW-k);
* a flow on images is a density ``p`` of dequantised data ``y = x + u``, and
  ``log P(x) = log ∫ p(x + u) du ≥ E_u[log p(x + u)]`` (Theis et al. 2016, §3.1), the single-draw
  bound, averaged over a fixed set of uniform draws. Its importance-weighted form with the
  uniform dequantiser as the proposal, ``log (1/k) Σ_i p(x + u_i)``, ``u_i ~ U[0,1)^D`` ("IW-uniform-k":
  Ho et al. 2019, eq. 12 with ``q(u|x) = 1``), is a lower bound too, and tightens towards
  ``log P(x)`` as ``k`` grows; it is the headline, so that a flow and a VAE are compared on bounds
  of one quantity at a stated ``k``. A flow whose density is itself estimated (FFJORD's Hutchinson
  trace) reports the single-draw bound: the exponential of a noisy log-density is not an unbiased
  density, so its importance-weighted form would not be a bound.

On 2-D data a flow's number is its exact log-density.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from vaeflow.data import PreparedDataset
from vaeflow.data.dequantization import model_input, to_tensor
from vaeflow.evaluation.bits import bits_per_dim
from vaeflow.models import DensityModel


class NonFiniteMetricError(RuntimeError):
    """An evaluation produced NaN or infinity; it is never written to a results file."""


def _per_example(
    model: DensityModel,
    x: torch.Tensor,
    levels: int | None,
    draws: int,
    seed: int,
    batch: int,
    score: str,
    k: int = 1,
    combine: str = "mean",
) -> torch.Tensor:
    """Per-example log-likelihood (nats) over ``draws`` fixed noise draws (fixed by ``seed``).

    ``score`` is ``"log_prob"`` (flows: exact density; VAEs: ELBO) or ``"bound"`` (IWAE-k).
    ``combine`` is ``"mean"`` (the draws' average: for a flow on images the single-draw bound
    ``E_u[log p(x + u)]``) or ``"logmeanexp"`` (``log (1/draws) Σ_i p(x + u_i)``, accumulated with a
    running log-sum-exp: for a flow on images the IW-uniform bound, see the module docstring).
    """
    logmeanexp = combine == "logmeanexp"
    out = torch.full((len(x),), -math.inf if logmeanexp else 0.0, dtype=torch.float64)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad(), torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
        torch.manual_seed(seed)
        for _ in range(draws):
            for start in range(0, len(x), batch):
                xb = model_input(x[start : start + batch], levels, model.discrete, generator)
                value = model.log_prob(xb) if score == "log_prob" else model.log_prob_bound(xb, k)
                part = slice(start, start + len(xb))
                if logmeanexp:
                    out[part] = torch.logaddexp(out[part], value.double().cpu())
                else:
                    out[part] += value.double().cpu()
    return out - math.log(draws) if logmeanexp else out / draws


def uniform_iw_applies(model: DensityModel, levels: int | None) -> bool:
    """Whether the model's headline on this data is the IW-uniform bound: a density of dequantised
    image levels whose log-density is computed, not estimated."""
    return levels is not None and model.exact and not model.discrete and not model.density_estimator


def _headline(block: dict[str, Any], k: int, label: str, summary: dict[str, float]) -> None:
    """Record the importance-weighted bound with ``k`` draws as ``block["iwae"]`` and make it the
    block's headline: the test number of a bound is its tightest form (module docstring)."""
    block["iwae"] = {"k": k, "name": label, **summary}
    block.update(
        bits_per_dim=summary["bits_per_dim"],
        bound=label,
        log_likelihood_nats=summary["log_likelihood_nats"],
        bits_per_dim_se=summary["bits_per_dim_se"],
    )


def _summary(values: torch.Tensor, num_dims: int, what: str) -> dict[str, float]:
    if not torch.isfinite(values).all():
        bad = int((~torch.isfinite(values)).sum())
        raise NonFiniteMetricError(f"{bad} non-finite {what} values; refusing to write them to results")
    bpd = bits_per_dim(values, num_dims)
    return {
        "log_likelihood_nats": float(values.mean()),
        "bits_per_dim": float(bpd.mean()),
        "bits_per_dim_se": float(bpd.std() / math.sqrt(len(bpd))) if len(bpd) > 1 else 0.0,
    }


def evaluate(
    model: DensityModel,
    data: PreparedDataset,
    settings: dict[str, Any],
) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """Score ``model`` on train (a subset), val and test; draw samples; time both.

    Returns the metrics (a JSON-serialisable dict), the samples array, and the per-example
    test scores in nats: ``log_likelihood`` (the headline quantity: the importance-weighted bound,
    IWAE-k / IW-k / IW-uniform-k, or the exact log-density on vectors), ``log_prob`` (the single-draw
    ``log_prob``: the ELBO for VAEs, ``E_u[log p(x + u)]`` for a flow on images) and, where the dataset
    has them, ``labels``.
    """
    model.eval()
    device = model.device
    draws = settings["dequantization_draws"] if (data.levels is not None and not model.discrete) else 1
    if not model.exact:
        draws = 1  # the VAE scores below are already Monte-Carlo estimates with their own noise
    common = dict(levels=data.levels, draws=draws, seed=settings["seed"], batch=settings["batch_size"])
    splits = {
        "train": data.train[: settings["train_examples"]],
        "val": data.val,
        "test": data.test,
    }
    metrics: dict[str, Any] = {"exact": model.exact, "discrete": model.discrete, "dequantization_draws": draws}
    timing: dict[str, float] = {}
    test_scores: dict[str, np.ndarray] = {}
    for name, array in splits.items():
        x = to_tensor(array).to(device)
        started = time.perf_counter()
        scores = _per_example(model, x, score="log_prob", **common)
        elapsed = time.perf_counter() - started
        headline = scores  # per example; an importance-weighted bound replaces it on the test split below
        if name == "test":
            timing["density_evals_per_s"] = len(x) * draws / elapsed
        block = {"examples": len(x), **_summary(scores, model.num_dims, f"{name} log_prob")}
        if model.exact:
            block["bound"] = "exact" if data.levels is None else "exact density of uniformly dequantised data"
            if model.density_estimator:
                block["bound"] += f" ({model.density_estimator})"
            if name == "test" and uniform_iw_applies(model, data.levels):
                k = settings["iwae_k"]
                label = f"iw-uniform-{k}"
                headline = _per_example(
                    model, x, data.levels, k, settings["seed"], settings["batch_size"], "log_prob", combine="logmeanexp"
                )
                block["single_draw_bits_per_dim"] = block["bits_per_dim"]  # E_u[log p(x + u)]
                _headline(block, k, label, _summary(headline, model.num_dims, label))
        else:
            block["bound"] = model.bound_name
            block["elbo_bits_per_dim"] = block["bits_per_dim"]  # the single-draw bound (the ELBO for VAEs)
            if name == "test":
                k = settings["iwae_k"]
                label = f"{model.importance_weighted_name}-{k}"
                headline = _per_example(model, x, score="bound", k=k, **common)
                _headline(block, k, label, _summary(headline, model.num_dims, label))
        metrics[name] = block
        if name == "test":
            test_scores["log_prob"] = scores.numpy()
            test_scores["log_likelihood"] = headline.numpy()

    with torch.no_grad(), torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(settings["seed"])
        started = time.perf_counter()
        samples = model.sample(settings["samples"]).cpu()
        timing["samples_per_s"] = settings["samples"] / (time.perf_counter() - started)
    finite = torch.isfinite(samples.flatten(1)).all(dim=1)
    if not finite.any():
        raise NonFiniteMetricError("every sample the model drew is non-finite; refusing to write them to results")
    metrics["nonfinite_samples"] = int((~finite).sum())
    if not finite.all():  # e.g. a flow's inverse overflowing at temperature 1: said, counted, never written
        print(
            f"warning: {metrics['nonfinite_samples']} of {len(samples)} samples were non-finite (the model's "
            f"sampling direction overflowed); they are left out of samples.npz and counted in nonfinite_samples"
        )
        samples = samples[finite]
    metrics["throughput"] = timing
    metrics["diagnostics"] = model.diagnostics()
    if data.test_labels is not None:
        test_scores["labels"] = np.asarray(data.test_labels)
    return metrics, samples.numpy(), test_scores
