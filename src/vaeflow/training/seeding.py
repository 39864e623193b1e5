"""Deterministic seeding and device choice."""

from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> None:
    """Seed Python and torch (CPU and CUDA) and ask torch for deterministic kernels."""
    random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, CPU otherwise; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU; set device: auto or cpu in the config")
    return torch.device(device)
