"""Invertible transforms with log-determinants, composed into flows (in the spirit of nflows/zuko).

Every :class:`Bijection` maps a batch ``x`` to ``(z, log|det ∂z/∂x|)`` with one log-det per
example, and inverts ``z`` back to ``x``. The log-det is always returned and accumulated by
:class:`Compose`; dropping it is the classic way to get wrong likelihoods.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from vaeflow.models.precision import full_precision, sum_per_example


class Bijection(nn.Module, ABC):
    """An invertible map ``x ↦ z`` with a tractable per-example ``log|det J|``."""

    @abstractmethod
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(z, logabsdet)`` with ``logabsdet`` of shape ``(B,)``."""

    @abstractmethod
    def inverse(self, z: Tensor) -> Tensor:
        """Return ``x`` such that ``forward(x)[0] == z``."""


class Compose(Bijection):
    """Apply bijections in order; log-dets add (chain rule), the inverse runs in reverse.

    The sum is accumulated in (at least) float32 whatever dtype a step returns under autocast.
    """

    def __init__(self, *transforms: Bijection) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = full_precision(x.new_zeros(x.shape[0]))
        for transform in self.transforms:
            x, step = transform(x)
            logdet = logdet + full_precision(step)
        return x, logdet

    def inverse(self, z: Tensor) -> Tensor:
        for transform in reversed(self.transforms):
            z = transform.inverse(z)
        return z


class Squeeze(Bijection):
    """Space-to-depth: ``(B, C, H, W) → (B, 4C, H/2, W/2)`` (Dinh et al. 2017, §3.6, Fig. 3).

    Each channel's 2x2 sub-squares become 4 channels. A permutation, so ``log|det| = 0``.
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(
                f"Squeeze needs even height and width, got a {h}x{w} input; use a spatial size divisible by 2"
            )
        z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return z, x.new_zeros(b)

    def inverse(self, z: Tensor) -> Tensor:
        b, c4, h2, w2 = z.shape
        c = c4 // 4
        return z.reshape(b, c, 2, 2, h2, w2).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h2, 2 * w2)


class LogitPreprocess(Bijection):
    """Level units to logit space (Dinh et al. 2017, §4.1; docs/design.md, "Likelihood accounting").

    ``y ∈ [0, K)^D`` (dequantised levels) ↦ ``s = α + (1-2α)·y/K`` ↦ ``z = logit(s)``, with
    ``log|dz/dy| = -D·log K + D·log(1-2α) - Σ[log s + log(1-s)]``. The ``-D·log K`` term of the
    ``1/K`` rescaling lives here, so a flow starting with this layer has a density per
    unit-width bin and no correction is applied elsewhere.
    """

    def __init__(self, levels: int, alpha: float = 0.05) -> None:
        super().__init__()
        if int(levels) != levels or levels < 1:
            raise ValueError(f"LogitPreprocess: levels must be a positive integer K, got {levels!r}")
        if not 0.0 < alpha < 0.5:
            raise ValueError(f"LogitPreprocess: alpha must lie in (0, 0.5) so logit(s) stays finite, got {alpha!r}")
        self.levels = int(levels)
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = full_precision(x)  # log s and log(1-s) near 0 and 1 need float32 (bfloat16 resolves s only to 2^-9)
        s = self.alpha + (1.0 - 2.0 * self.alpha) * x / self.levels
        log_s, log_1ms = torch.log(s), torch.log1p(-s)
        z = log_s - log_1ms
        num_dims = x[0].numel()
        constant = num_dims * (math.log1p(-2.0 * self.alpha) - math.log(self.levels))
        logdet = constant - sum_per_example(log_s + log_1ms)
        return z, logdet

    def inverse(self, z: Tensor) -> Tensor:
        return self.levels * (torch.sigmoid(z) - self.alpha) / (1.0 - 2.0 * self.alpha)


def to_levels(y: Tensor, levels: int | None) -> Tensor:
    """A flow's continuous sample in level units as integer grey levels ``floor(clamp(y, 0, K-1))``
    (the bin it falls in); real vectors (``levels`` None) pass through."""
    return y if levels is None else torch.floor(y.clamp(0, levels - 1))
