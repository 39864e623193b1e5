"""A run's results computed from its training outputs, while it retrains.

Snakemake removes a training job's outputs before the job runs, but not the results computed from
them (the run's ``metrics.json``, samples, test scores and probes). Had those stayed in place, an
interrupted or failed retrain would leave them looking current: with the checkpoint missing,
Snakemake does not rebuild an existing ``metrics.json`` (``Nothing to be done``). Deleting them up
front would instead throw away perfectly good results whenever a retrain reproduces the same bytes.

So the training job first moves them into ``.superseded/`` in the run folder (out of Snakemake's
sight, so a plain rerun rebuilds them), and once training has finished it :func:`settle`\\ s them:
they go back, with their old times, only if the new checkpoint and training summary are byte for
byte the ones ``metrics.json`` records it was computed from; otherwise they are deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

SUPERSEDED = ".superseded"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def set_aside(run_dir: str | os.PathLike[str], paths: list[str]) -> Path:
    """Move each existing path (a file or folder inside ``run_dir``) into ``run_dir/.superseded/``;
    return that folder. Results an interrupted retrain set aside stay there when none are in place
    (they are restored as well if this retrain reproduces the bytes they were computed from); results
    in place replace them."""
    run_dir = Path(run_dir)
    aside = run_dir / SUPERSEDED
    existing = [path for path in map(Path, paths) if path.exists()]
    if existing:
        shutil.rmtree(aside, ignore_errors=True)
    for path in existing:
        if path.resolve().parent != run_dir.resolve():
            raise ValueError(
                f"{path} is not directly inside the run folder {run_dir}; only a run's own results "
                "are set aside while it retrains"
            )
        aside.mkdir(exist_ok=True)
        os.replace(path, aside / path.name)
        print(f"set aside {path} while the run retrains (it was computed from the old checkpoint)")
    return aside


def settle(
    run_dir: str | os.PathLike[str], checkpoint: str | os.PathLike[str], summary: str | os.PathLike[str]
) -> bool:
    """After a finished retrain: restore the set-aside results if they were computed from exactly
    this ``checkpoint`` and training ``summary`` (as their ``metrics.json`` records), else delete
    them. Returns whether they were restored."""
    run_dir = Path(run_dir)
    aside = run_dir / SUPERSEDED
    if not aside.is_dir():
        return False
    metrics = aside / "metrics.json"
    recorded = json.loads(metrics.read_text(encoding="utf-8")).get("computed_from", {}) if metrics.is_file() else {}
    same = bool(recorded) and recorded == {
        "checkpoint_sha256": file_sha256(checkpoint),
        "train_summary_sha256": file_sha256(summary),
    }
    if same:
        for entry in sorted(aside.iterdir()):
            os.replace(entry, run_dir / entry.name)
        print(f"restored the results of {run_dir}: the retrain wrote the same checkpoint and summary bytes")
    else:
        print(f"deleted the superseded results of {run_dir}: they were computed from another checkpoint")
    shutil.rmtree(aside)
    return same
