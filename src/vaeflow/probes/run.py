"""Run the probes of one trained run in one process and write their arrays (a probe rule's job).

One process per run, not one per probe and run: torch's start-up and the loading of the checkpoint
and the data are paid once. Each probe still writes its own ``.npz``, so an analysis depends only on
its own probe's files; and each probe's result is memoised beside them (``.memo/``) under a key of
everything it depends on, so that when one probe's settings or code change, the job recomputes that
probe and restores the others byte for byte (the analyses that read those then compute the same
tables; Snakemake, which plans before jobs run, still reruns their notebooks).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaeflow.data import load_prepared
from vaeflow.io import atomic_path, write_atomic, write_text_atomic
from vaeflow.probes import probe_module
from vaeflow.training.checkpoint import load_checkpoint, model_from_checkpoint
from vaeflow.training.seeding import resolve_device
from vaeflow.training.superseded import file_sha256

#: the folder, beside the probe files, that keeps each probe's last result and its key
MEMO = ".memo"


def probe_key(name: str, settings: dict[str, Any], inputs: dict[str, Any], code: str | Path | None) -> str:
    """sha256 of everything a probe's result depends on: its name and settings, the sha256 of the
    run's checkpoint and datasets (``inputs``, hashed once per job by :func:`run_probes`), and its
    code digest file (rule code_digest) when one is given."""
    parts = {
        "probe": name,
        "settings": settings,
        **inputs,
        "code": file_sha256(code) if code is not None else None,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _memo(out: Path, name: str) -> tuple[Path, Path]:
    folder = out.parent / MEMO
    return folder / f"{name}.npz", folder / f"{name}.key"


def run_probes(
    settings: dict[str, dict[str, Any]],
    checkpoint: str | Path,
    data_path: str | Path,
    outs: dict[str, str | Path],
    others: dict[str, str | Path] | None = None,
    device: str = "auto",
    code: dict[str, str | Path] | None = None,
) -> dict[str, str]:
    """Write each probe's arrays to ``outs[name]`` (.npz, atomically), computed under the seed of its
    ``settings[name]``, or restored from its memo when its key (:func:`probe_key`) is unchanged.

    ``code``: each probe's code digest file, part of its key. Returns ``{name: "computed" | "restored"}``.
    """
    if set(settings) != set(outs):
        raise ValueError(
            f"probes with settings ({', '.join(sorted(settings))}) and probes with an output "
            f"({', '.join(sorted(outs))}) differ; give both for every probe"
        )
    others = dict(others or {})
    inputs = {
        "checkpoint": file_sha256(checkpoint),
        "data": file_sha256(data_path),
        "others": {k: file_sha256(v) for k, v in sorted(others.items())},
    }
    keys = {name: probe_key(name, settings[name], inputs, (code or {}).get(name)) for name in settings}
    done: dict[str, str] = {}
    for name in settings:
        memo, key_file = _memo(Path(outs[name]), name)
        if memo.is_file() and key_file.is_file() and key_file.read_text().strip() == keys[name]:
            with atomic_path(outs[name]) as tmp:
                shutil.copyfile(memo, tmp)
            done[name] = "restored"
    todo = [name for name in settings if name not in done]
    if not todo:
        return done
    dev = resolve_device(device)
    data = load_prepared(data_path)
    saved = load_checkpoint(checkpoint, dev)
    other_data = {key: load_prepared(path) for key, path in others.items()}
    for name in todo:
        module = probe_module(name)
        model = model_from_checkpoint(saved, dev)  # a fresh copy per probe: none sees another's changes
        with torch.random.fork_rng(devices=[] if dev.type == "cpu" else [dev]):
            torch.manual_seed(int(settings[name].get("seed", 0)))
            arrays = module.probe(model, data, settings[name], other_data)
        bad = [key for key, value in arrays.items() if not isinstance(value, np.ndarray)]
        if bad:
            raise TypeError(f"probe {name} returned non-array values for {', '.join(bad)}; return numpy arrays only")
        write_atomic(outs[name], lambda p, arrays=arrays: np.savez(p.open("wb"), **arrays))
        memo, key_file = _memo(Path(outs[name]), name)
        memo.parent.mkdir(parents=True, exist_ok=True)
        key_file.unlink(missing_ok=True)  # never a key beside another result
        write_atomic(memo, lambda p, name=name: shutil.copyfile(outs[name], p))
        write_text_atomic(key_file, keys[name] + "\n")
        done[name] = "computed"
    return done
