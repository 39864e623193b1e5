"""What a model consumes: integer levels for discrete models, dequantised levels for densities.

Uniform dequantisation (Theis, van den Oord & Bethge 2016, "A note on the evaluation
of generative models"; Ho et al. 2019, "Flow++"): for image data with ``K`` levels a
continuous density model is trained and evaluated on ``y = x + u``, ``u ~ U[0,1)^D``,
in *level units*. Each integer ``x`` owns the unit-width bin ``[x, x+1)^D``, so by
Jensen's inequality

    log P(x) = log ∫_{[0,1)^D} p(x + u) du  ≥  E_u[log p(x + u)],

with no ``D·log K`` term here: a flow that rescales by ``1/K`` carries it in its
log-det (see :mod:`vaeflow.models.base`).
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """``a`` as a float32 tensor (a copy for non-float32 input, e.g. uint8 images)."""
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def model_input(
    x: torch.Tensor, levels: int | None, discrete: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The tensor a model consumes for data batch ``x``.

    Image data (``levels`` not None) for a continuous model (``discrete`` False):
    ``x + u`` with ``u ~ U[0,1)`` elementwise drawn from ``generator`` (uniform
    dequantisation in level units; integer input is first cast to float32). Otherwise
    (a discrete model, or continuous data) ``x`` itself, unchanged.
    """
    if levels is None or discrete:
        return x
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    noise_device = x.device if generator is None else generator.device
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=noise_device)
    return x + u.to(x.device)
