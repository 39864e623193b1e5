"""Log-densities and samplers shared by the models.

* Discretised logistic likelihood of PixelCNN++ (Salimans et al. 2017, §2.1, eq. 2),
  in *level units*: bins of unit width centred on the integers ``0 … K-1``, the two edge
  bins extended to ``±∞`` so the masses over the ``K`` levels sum to one.
* Gaussian log-densities with every ``-½·log 2π`` constant kept (docs/design.md, "Likelihood
  accounting": the constants do not always cancel, e.g. in IWAE weights).

Every log-density is computed and summed in (at least) float32, whatever the dtype of the
network outputs it is given (bfloat16 under autocast; :mod:`vaeflow.models.precision`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vaeflow.models.precision import full_precision, sum_per_example

LOG_2PI = math.log(2.0 * math.pi)


def _check_levels(levels: int) -> int:
    if int(levels) != levels or levels < 2:
        raise ValueError(f"levels must be an integer K >= 2 (number of grey levels), got {levels!r}")
    return int(levels)


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, levels: int) -> Tensor:
    """Element-wise log-mass of integer levels ``x ∈ {0, …, K-1}`` (Salimans et al. 2017, eq. 2).

    ``P(x) = σ(a) - σ(b)`` with ``a = (x + ½ - μ)/s``, ``b = (x - ½ - μ)/s``, ``s = exp(log_scale)``;
    the first bin is ``σ(a)`` (extends to ``-∞``) and the last ``1 - σ(b) = σ(-b)`` (to ``+∞``).
    Interior bins use the stable identity
    ``log(σ(a) - σ(b)) = log σ(a) + log σ(-b) + log(-expm1(b - a))``, which stays accurate
    for means far outside the range and for very small or large scales.

    All arguments broadcast; the result has the broadcast shape (no summation).
    """
    levels = _check_levels(levels)
    x, mean, log_scale = full_precision(x), full_precision(mean), full_precision(log_scale)
    inv_scale = torch.exp(-log_scale)
    centred = x - mean
    a = (centred + 0.5) * inv_scale
    b = (centred - 0.5) * inv_scale
    log_cdf_a = F.logsigmoid(a)  # log σ(a): mass of (-∞, x + ½]
    log_sf_b = F.logsigmoid(-b)  # log (1 - σ(b)): mass of (x - ½, ∞)
    interior = log_cdf_a + log_sf_b + torch.log(-torch.expm1(b - a))
    return torch.where(x < 0.5, log_cdf_a, torch.where(x > levels - 1.5, log_sf_b, interior))


def discretized_logistic_sample(
    mean: Tensor, log_scale: Tensor, levels: int, generator: torch.Generator | None = None
) -> Tensor:
    """Draw integer levels (as floats) from the discretised logistic of :func:`discretized_logistic_log_prob`.

    A continuous logistic draw ``μ + s·(log u - log(1-u))`` is rounded to the nearest integer
    (the unit bin it falls in) and clamped to ``[0, K-1]``, which is exactly the edge bins'
    extension to ``±∞``.
    """
    levels = _check_levels(levels)
    mean, log_scale = torch.broadcast_tensors(mean, log_scale)
    eps = torch.finfo(mean.dtype).eps
    u = torch.rand(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype).clamp(eps, 1.0 - eps)
    continuous = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    return torch.floor(continuous + 0.5).clamp(0, levels - 1)


def standard_normal_log_prob(z: Tensor, batch_dims: int = 1) -> Tensor:
    """``log N(z; 0, I)`` summed over all dimensions after the first ``batch_dims``, constants kept."""
    z = full_precision(z)
    return sum_per_example(-0.5 * (z.square() + LOG_2PI), batch_dims)


def diagonal_normal_log_prob(z: Tensor, mean: Tensor, log_std: Tensor, batch_dims: int = 1) -> Tensor:
    """``log N(z; μ, diag σ²)`` summed over all dimensions after the first ``batch_dims``, constants kept."""
    z, mean, log_std = full_precision(z), full_precision(mean), full_precision(log_std)
    standardised = (z - mean) * torch.exp(-log_std)
    elementwise = -0.5 * (standardised.square() + LOG_2PI) - log_std
    elementwise = elementwise.expand(torch.broadcast_shapes(z.shape, mean.shape, log_std.shape))
    return sum_per_example(elementwise, batch_dims)
