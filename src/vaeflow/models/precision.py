"""Float32 log-density arithmetic under mixed precision (``torch.autocast``).

Under autocast the conditioner networks' matrix products and convolutions return bfloat16
(8 significant bits, unit roundoff ``2⁻⁹ ≈ 2·10⁻³``). That is harmless inside a network, but a
log-likelihood is a sum of thousands of terms of a few nats each: a bfloat16 total of
``|log p| ≈ 2000`` nats is only resolved to 4 nats. So the models read every network output
through :func:`full_precision` before it enters a log-det, a log-density or a sample
(autocast then leaves the element-wise math that follows in float32: no op on that path
lowers its precision), and sum per-example terms with :func:`sum_per_example`. For a flow
this keeps the log-det *exact for the map actually applied*: the map and its log-det are
computed from the same (bfloat16-rounded) conditioner outputs, in float32. float64 inputs
(the tests' brute-force Jacobians) are never lowered.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor


def full_precision(t: Tensor) -> Tensor:
    """``t`` in float32 when it is a half-precision (bfloat16/float16) tensor; float32 and float64 unchanged."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


def autocast_off(device: torch.device | str) -> contextlib.AbstractContextManager:
    """A float32 region inside a mixed-precision one: autocast disabled on ``device``'s type
    (a no-op context, without autocast's own entry cost, when autocast is not on)."""
    device_type = torch.device(device).type
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def sum_per_example(t: Tensor, batch_dims: int = 1) -> Tensor:
    """Sum ``t`` over every dimension after the first ``batch_dims``, accumulated in at least float32."""
    return full_precision(t).reshape(*t.shape[:batch_dims], -1).sum(-1)
