"""Deterministic seeding and device choice."""

from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA) and ask torch for deterministic kernels.

    The kernel flag is set with the call ``torch.use_deterministic_algorithms(True,
    warn_only=True)`` makes, without the rest of that function: it also sets TorchInductor's
    ``deterministic`` option, and importing ``torch._inductor`` took 2.2 s per process here,
    more than half of a short training job's overhead. Nothing in the study compiles with
    TorchInductor, so that option has nothing to act on.
    """
    random.seed(seed)
    torch.manual_seed(seed)
    torch._C._set_deterministic_algorithms(True, warn_only=True)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, CPU otherwise; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' was asked for but torch sees no CUDA GPU; set device: auto or cpu in the config"
        )
    return torch.device(device)
