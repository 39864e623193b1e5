"""Brute-force helpers the model tests share: randomised parameters, full Jacobians, dequantised data."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

F64 = torch.float64


def randomise(module: nn.Module, std: float = 0.1, seed: int = 0) -> nn.Module:
    """Add Gaussian noise to every parameter so zero-initialised layers are no longer the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return module


def jacobian_logdet(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``log|det ∂fn/∂x|`` of one example ``x (1, *shape)`` by a full autograd Jacobian."""
    shape = x.shape
    jac = jacobian(lambda v: fn(v.reshape(shape)).reshape(-1), x.reshape(-1))
    return torch.linalg.slogdet(jac)[1]


def dequantised_levels(shape: tuple[int, ...], levels: int, seed: int = 0, dtype: torch.dtype = F64) -> Tensor:
    """Integer levels plus uniform noise: a dequantised image in level units."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, levels, shape, generator=generator).to(dtype)
    return x + torch.rand(shape, generator=generator, dtype=dtype)
