"""Run one probe on one trained run and write its arrays (the ``probe`` rule's job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeflow.data import load_prepared
from vaeflow.io import write_atomic
from vaeflow.probes import probe_module
from vaeflow.training.checkpoint import load_checkpoint, model_from_checkpoint
from vaeflow.training.seeding import resolve_device


def run_probe(
    name: str, checkpoint: str | Path, data_path: str | Path, settings: dict[str, Any], out: str | Path,
    others: dict[str, str | Path] | None = None, device: str = "auto",
) -> dict[str, np.ndarray]:
    """Load the run, call the probe under a fixed seed, and write ``out`` (.npz) atomically."""
    module = probe_module(name)
    dev = resolve_device(device)
    data = load_prepared(data_path)
    model = model_from_checkpoint(load_checkpoint(checkpoint, dev), dev)
    other_data = {key: load_prepared(path) for key, path in (others or {}).items()}
    with torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
        torch.manual_seed(int(settings.get("seed", 0)))
        arrays = module.probe(model, data, settings, other_data)
    bad = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
    if bad:
        raise TypeError(f"probe {name} returned non-array values for {', '.join(bad)}; return numpy arrays only")
    write_atomic(out, lambda p: np.savez(p.open("wb"), **arrays))
    return arrays
