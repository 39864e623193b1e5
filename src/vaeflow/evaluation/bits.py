"""Bits per dimension from a log-likelihood in nats.

Convention (see :mod:`vaeflow.models.base` and docs/design.md, "Likelihood accounting"): every
model's ``log_prob`` is already on the scale of unit-width bins in *level units*.

* Flows receive dequantised levels ``y = x + u`` and carry the ``1/K`` rescaling, with its
  ``-D·log K`` log-det, in their first layer, so ``log p(y)`` is a density per unit bin and
  ``E_u[log p(x + u)] ≤ log P(x)``.
* Discrete decoders (discretised logistic) give a log-mass ``log P(x)`` directly.

Hence no ``D·log K`` term is subtracted here: ``bits/dim = -log_prob / (D·ln 2)``. A uniform
model on ``K`` levels gets exactly ``log2 K`` bits/dim (8 for 8-bit images).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch

Number = TypeVar("Number", float, np.ndarray, torch.Tensor)


def bits_per_dim(log_prob_nats: Number, num_dims: int) -> Number:
    """``-log_prob_nats / (num_dims · ln 2)`` for floats, numpy arrays or tensors (element-wise)."""
    if isinstance(num_dims, bool) or int(num_dims) != num_dims or num_dims < 1:
        raise ValueError(f"bits_per_dim: num_dims must be a positive integer (D = C·H·W), got {num_dims!r}")
    return -log_prob_nats / (int(num_dims) * math.log(2.0))
