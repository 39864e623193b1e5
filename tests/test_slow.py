"""Thorough checks that train real models (marker ``slow``; CI runs them after the fast suite).

On toy densities whose true log-density is known, a trained model's held-out negative
log-likelihood can approach the truth but never beat it beyond sampling error: a model
that "beats" the data's own entropy has wrong likelihood accounting.
"""

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from vaeflow.data import build_dataset
from vaeflow.data.toy2d import EIGHT_GAUSSIANS_STD, eight_gaussian_centers
from vaeflow.evaluation.evaluate import evaluate
from vaeflow.training.checkpoint import load_checkpoint, model_from_checkpoint
from vaeflow.training.engine import train

pytestmark = pytest.mark.slow

OPTIONS = {
    "realnvp": {"coupling_layers": 8, "hidden": 64, "mlp_layers": 2},
    "vae": {"latent_dim": 2, "hidden": 64, "layers": 2},
}
SETTINGS = {
    "iwae_k": 500,
    "dequantization_draws": 1,
    "batch_size": 500,
    "samples": 100,
    "seed": 0,
    "train_examples": 500,
}


def _true_log_density(points: np.ndarray) -> np.ndarray:
    centers, sd = eight_gaussian_centers(), EIGHT_GAUSSIANS_STD
    sq = ((points[:, None, :] - centers[None]) ** 2).sum(-1)
    return logsumexp(-sq / (2 * sd**2), axis=1) - math.log(8) - math.log(2 * math.pi * sd**2)


def _fit(model, data, tmp_path, steps):
    run = {
        "dataset": "toy2d",
        "dataset_options": {},
        "data_seed": 0,
        "model": model,
        "options": OPTIONS[model],
        "seed": 0,
        "training": {
            "batch_size": 256,
            "lr": 2e-3,
            "warmup_steps": 100,
            "grad_clip": 100.0,
            "eval_every": 500,
            "checkpoint_every": 10_000,
            "val_examples": 2000,
            "steps": steps,
        },
    }
    train(run, data, tmp_path, device="cpu", progress=False)
    return model_from_checkpoint(load_checkpoint(tmp_path / "checkpoint.pt"))


@pytest.fixture(scope="module")
def gaussians():
    torch.set_num_threads(1)
    return build_dataset("toy2d", {"density": "eight_gaussians", "n_train": 20000, "n_val": 2000, "n_test": 5000}, 0)


@pytest.mark.parametrize(("model", "steps", "slack_nats"), [("realnvp", 3000, 0.35), ("vae", 3000, 0.9)])
def test_trained_model_approaches_but_never_beats_the_true_density(tmp_path, gaussians, model, steps, slack_nats):
    fitted = _fit(model, gaussians, tmp_path, steps)
    metrics, _, _ = evaluate(fitted, gaussians, SETTINGS)
    truth = _true_log_density(gaussians.test.astype(np.float64))
    true_nll, se = -truth.mean(), truth.std() / math.sqrt(len(truth))
    model_nll = -metrics["test"]["log_likelihood_nats"]
    assert model_nll >= true_nll - 4 * se, f"{model} beats the true density: {model_nll:.3f} < {true_nll:.3f}"
    assert model_nll <= true_nll + slack_nats, f"{model} did not learn: {model_nll:.3f} vs true {true_nll:.3f}"
    if model == "vae":  # the ELBO is looser than IWAE-k, and both are bounds
        assert metrics["test"]["elbo_bits_per_dim"] >= metrics["test"]["iwae"]["bits_per_dim"]
