"""Checkpoints: written atomically and byte-reproducibly, read back with ``weights_only=True``.

A checkpoint holds only tensors and plain Python values, so loading never
unpickles arbitrary objects.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from vaeflow.io import write_atomic
from vaeflow.models import DensityModel, build_model


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (``reason`` says why), or that holds more than tensors and plain values."""

    def __init__(self, path: str | Path, reason: str, advice: str) -> None:
        super().__init__(f"{reason}. {advice}")
        self.path, self.reason = Path(path), reason


def checkpoint_bytes(payload: dict[str, Any]) -> bytes:
    """``torch.save`` of ``payload`` as bytes: the same tensors and values give the same bytes.

    ``torch.save`` to a path names the zip's inner folder after the file, and an atomic write's
    file is a random temporary one, so an identical retrain changed the checkpoint's sha256 and
    every result downstream reran. Saved to memory the folder is always ``archive``.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (tensors and plain values); a failed write names the file and why."""
    data = checkpoint_bytes(payload)
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); say what to do when it is unreadable."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as exc:  # weights_only refused an object: never retry without it
        # torch's message advises retrying with weights_only=False; keep only what it refused
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        refused = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), "an unsupported object")
        raise CheckpointError(
            path,
            f"refused to load checkpoint {path}: it holds something other than tensors and plain values "
            f"({refused}), which vaeflow never unpickles because loading it could run code",
            "The study writes no such file: delete it and rerun the rule that writes it.",
        ) from None
    except Exception as exc:  # torch raises several types for corrupt or truncated files
        detail = str(exc).split(". ")[0] if str(exc) else "no detail"
        raise CheckpointError(
            path,
            f"cannot read checkpoint {path}: it is corrupt or incomplete ({type(exc).__name__}: {detail})",
            "Delete it and rerun the rule that writes it.",
        ) from None


def model_from_checkpoint(payload: dict[str, Any], device: str | torch.device = "cpu") -> DensityModel:
    """Rebuild the model a training checkpoint describes and load its weights (eval mode)."""
    model = build_model(payload["model"], tuple(payload["data_shape"]), payload["levels"], payload["options"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
