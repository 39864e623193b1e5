"""Evaluate one trained run and write its metrics.json, samples.npz and test_scores.npz (the evaluate rule's job)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vaeflow.data import load_prepared
from vaeflow.evaluation.evaluate import evaluate
from vaeflow.evaluation.objective import training_objective
from vaeflow.io import read_json, write_atomic, write_json_atomic
from vaeflow.provenance import git_version, package_versions
from vaeflow.training.checkpoint import load_checkpoint, model_from_checkpoint
from vaeflow.training.seeding import resolve_device
from vaeflow.training.superseded import file_sha256

SRC = Path(__file__).resolve().parents[2]


def evaluate_run(
    checkpoint: str | Path,
    train_summary: str | Path,
    data_path: str | Path,
    settings: dict[str, Any],
    metrics_path: str | Path,
    samples_path: str | Path,
    scores_path: str | Path,
    device: str = "auto",
) -> dict[str, Any]:
    """Score a trained run on its data and write metrics (with provenance), samples and the
    per-example test scores atomically."""
    dev = resolve_device(device)
    data = load_prepared(data_path)
    model = model_from_checkpoint(load_checkpoint(checkpoint, dev), dev)
    trained = read_json(train_summary)
    run = trained["run"]
    started = time.perf_counter()
    metrics, samples, scores = evaluate(model, data, settings)
    metrics.update(
        {
            "dataset": run["dataset"],
            "model": run["model"],
            "seed": run["seed"],
            "levels": data.levels,
            "num_dims": data.num_dims,
            "parameters": trained["parameters"],
            "steps": trained["steps"],
            "best_step": trained["best_step"],
            "converged": trained.get("converged", False),
            "stopped_by": trained.get("stopped_by", "ceiling"),
            "train_diagnostics": trained.get("diagnostics", {}),
            "trained_by": training_objective(run, model.exact, model.bound_name),
            # where and in what precision training ran (train.json); evaluation is always float32
            "train_device": trained.get("device"),
            "train_precision": trained.get("precision", "fp32"),
            "eval_wall_time_s": time.perf_counter() - started,
            "device": str(dev),
            "config_hash": trained["run_key"],
            "evaluation": settings,
            "code_version": os.environ.get("VAEFLOW_CODE_VERSION") or git_version(SRC),
            # the code that trained every step and the data it trained on (train.json, the resume key)
            # the exact training outputs these results come from (a retrain that rewrites the same bytes keeps them)
            "computed_from": {
                "checkpoint_sha256": file_sha256(checkpoint),
                "train_summary_sha256": file_sha256(train_summary),
            },
            "code_hash": trained["code_hash"],
            "data_sha256": trained["data_sha256"],
            "versions": package_versions(),
        }
    )
    write_atomic(samples_path, lambda p: np.savez(p.open("wb"), samples=samples))
    write_atomic(scores_path, lambda p: np.savez(p.open("wb"), **scores))
    write_json_atomic(metrics_path, metrics)
    return metrics
