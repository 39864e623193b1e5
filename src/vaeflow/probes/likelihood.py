"""The ELBO → IWAE-k curve of a bound model, per test example (Burda et al. 2016).

For a model whose likelihood is a bound (VAE and VAE-IAF everywhere; Flow++ on images, whose
variational dequantisation makes it one), draw ``K`` importance log-weights per test example
once, ``log w_i = log p(x, z_i) − log q(z_i|x)`` (``model.log_weights``), and estimate IWAE-k for
every ``k`` of the settings by splitting the draws into ``G = ⌊K/k⌋`` disjoint groups of ``k``
and averaging the groups' bounds:

    IWAE-k(x) ≈ (1/G) Σ_g [logsumexp_{i∈g} log w_i − log k]

Each group's term is an unbiased estimate of the IWAE-k bound, so the average is too, with
``G`` times less variance than a single one; k = 1 is the ELBO. The curve is therefore
non-decreasing in k in expectation and stays below log p(x) (Burda et al. 2016, Thm. 1).

Settings (``analyses.likelihood``): ``iwae_ks`` — the k values;
``iwae_examples`` — test examples scored; ``max_k`` — per-model cap on the largest k where one
draw is a full flow pass (Flow++), e.g. ``{flowpp: 256}``; ks above the cap are skipped.

Arrays: ``k`` (n_k,), ``iwae_nats`` (n_k, N) per example, ``labels`` (N,) where labelled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vaeflow.data import PreparedDataset
from vaeflow.data.dequantization import model_input, to_tensor
from vaeflow.models import DensityModel
from vaeflow.probes import model_name


def group_bounds(log_weights: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """IWAE-k per example for each ``k`` from ``(K, N)`` log-weights, averaged over ``K/k`` groups."""
    total = log_weights.shape[0]
    rows = []
    for k in ks:
        if k > total:
            raise ValueError(f"k = {k} exceeds the {total} draws")
        groups = log_weights[: (total // k) * k].reshape(total // k, k, -1)  # a remainder of draws is left out
        rows.append((torch.logsumexp(groups.double(), dim=1) - math.log(k)).mean(dim=0))
    return torch.stack(rows)


def probe(model: DensityModel, data: PreparedDataset, settings: dict[str, Any], others: dict) -> dict[str, np.ndarray]:
    ks = sorted(int(k) for k in settings["iwae_ks"])
    cap = int(settings.get("max_k", {}).get(model_name(model), max(ks)))
    ks = [k for k in ks if k <= cap]
    if not ks:
        raise ValueError(
            f"analyses.likelihood: no iwae_ks at or below this model's max_k ({cap}); lower the ks or raise max_k"
        )
    examples = min(int(settings["iwae_examples"]), len(data.test))
    x = to_tensor(data.test[:examples]).to(device=model.device, dtype=next(model.parameters()).dtype)
    generator = torch.Generator(device=x.device).manual_seed(int(settings["seed"]))
    batch = int(settings.get("batch_size", 50))
    curves = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = model_input(x[start : start + batch], data.levels, model.discrete, generator)
            curves.append(group_bounds(model.log_weights(xb, max(ks), generator=generator), ks))
    iwae = torch.cat(curves, dim=1)
    if not torch.isfinite(iwae).all():
        raise ValueError(
            f"{int((~torch.isfinite(iwae)).sum())} non-finite IWAE-k values; the model's weights overflowed"
        )
    arrays = {"k": np.asarray(ks), "iwae_nats": iwae.numpy()}
    if data.test_labels is not None:
        arrays["labels"] = np.asarray(data.test_labels[:examples])
    return arrays
