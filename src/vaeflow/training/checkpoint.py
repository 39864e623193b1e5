"""Checkpoints: written atomically, read back with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values, so loading never
unpickles arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vaeflow.io import write_atomic
from vaeflow.models import DensityModel, build_model


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (tensors and plain values) with ``torch.save``."""
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); say what to do when it is unreadable."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise RuntimeError(
            f"cannot read checkpoint {path}: {exc}. Delete it and rerun the training rule that writes it."
        ) from exc


def model_from_checkpoint(payload: dict[str, Any], device: str | torch.device = "cpu") -> DensityModel:
    """Rebuild the model a training checkpoint describes and load its weights (eval mode)."""
    model = build_model(payload["model"], tuple(payload["data_shape"]), payload["levels"], payload["options"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
