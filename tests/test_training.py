"""The training engine: exact resume, atomic outputs, a loud stop on a non-finite loss."""

import json

import numpy as np
import pytest
import torch

from vaeflow.data import build_dataset
from vaeflow.training.checkpoint import load_checkpoint, model_from_checkpoint
from vaeflow.training.engine import RESUME_FILE, NonFiniteLossError, train

OUTPUTS = ("checkpoint.pt", "curves.csv", "train.json")


def _run(model="realnvp", dataset="digits", steps=24, seed=0, **training):
    options = {"vae": {"latent_dim": 2, "hidden": 16, "layers": 1},
               "realnvp": {"hidden_channels": 4, "res_blocks": 1, "n_scales": 2}}[model]
    return {
        "dataset": dataset, "dataset_options": {}, "data_seed": 0, "model": model, "options": options,
        "seed": seed,
        "training": {"batch_size": 16, "lr": 1e-3, "warmup_steps": 4, "grad_clip": 100.0, "eval_every": 8,
                     "checkpoint_every": 4, "val_examples": 64, "steps": steps, **training},
    }


@pytest.fixture(scope="module")
def digits():
    return build_dataset("digits", {}, 0)


class Interrupt(Exception):
    pass


def _interrupt_at(n):
    def hook(step):
        if step == n:
            raise Interrupt

    return hook


@pytest.mark.parametrize("model", ["realnvp", "vae"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, digits, model):
    run = _run(model)
    whole = train(run, digits, tmp_path / "whole", device="cpu", progress=False)

    with pytest.raises(Interrupt):
        train(run, digits, tmp_path / "resumed", device="cpu", progress=False, on_step=_interrupt_at(14))
    assert (tmp_path / "resumed" / RESUME_FILE).exists()
    assert not any((tmp_path / "resumed" / name).exists() for name in OUTPUTS), "no output before the run ends"
    saved = load_checkpoint(tmp_path / "resumed" / RESUME_FILE)
    assert saved["state"]["step"] == 12  # the last checkpoint before the interruption

    resumed = train(run, digits, tmp_path / "resumed", device="cpu", progress=False)
    assert not (tmp_path / "resumed" / RESUME_FILE).exists()
    assert resumed["best_val_bits_per_dim"] == whole["best_val_bits_per_dim"]
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    curves_a = (tmp_path / "whole" / "curves.csv").read_text().splitlines()
    curves_b = (tmp_path / "resumed" / "curves.csv").read_text().splitlines()
    strip = lambda rows: [",".join(r.split(",")[:5]) for r in rows]  # drop elapsed time
    assert strip(curves_a) == strip(curves_b)


def test_resume_file_for_other_settings_is_ignored(tmp_path, digits):
    with pytest.raises(Interrupt):
        train(_run(), digits, tmp_path, device="cpu", progress=False, on_step=_interrupt_at(5))
    summary = train(_run(lr=2e-3), digits, tmp_path, device="cpu", progress=False)
    assert summary["steps"] == 24
    whole = train(_run(lr=2e-3), digits, tmp_path / "fresh", device="cpu", progress=False)
    assert summary["best_val_bits_per_dim"] == whole["best_val_bits_per_dim"]


def test_outputs_and_best_checkpoint(tmp_path, digits):
    summary = train(_run(steps=16), digits, tmp_path, device="cpu", progress=False)
    curves = np.genfromtxt(tmp_path / "curves.csv", delimiter=",", names=True)
    assert list(curves["step"]) == [8, 16]
    assert summary["best_val_bits_per_dim"] == pytest.approx(curves["val_bits_per_dim"].min())
    payload = load_checkpoint(tmp_path / "checkpoint.pt")
    assert payload["step"] == summary["best_step"]
    model = model_from_checkpoint(payload)
    assert model.num_parameters() == summary["parameters"] == json.loads((tmp_path / "train.json").read_text())["parameters"]


def test_non_finite_loss_stops_with_a_named_error(tmp_path, digits):
    with pytest.raises(NonFiniteLossError) as err:
        train(_run(lr=1e30, warmup_steps=0), digits, tmp_path, device="cpu", progress=False)
    message = str(err.value)
    for part in ("'realnvp'", "'digits'", "seed 0", "step"):
        assert part in message
    assert not any((tmp_path / name).exists() for name in OUTPUTS)


def test_seeding_asks_for_deterministic_kernels_without_loading_inductor():
    """seed_everything sets torch's deterministic-kernel flag (warn-only), as
    torch.use_deterministic_algorithms would, without importing TorchInductor (2 s per job)."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom vaeflow.training.seeding import seed_everything\nseed_everything(0)\n"
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
            " 'torch._inductor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]
