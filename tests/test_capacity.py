"""Matched capacity: the width nearest a parameter budget (brute force over widths), and training at it."""

import pytest

from vaeflow.models import MODELS, build_model
from vaeflow.models.capacity import TOLERANCE, fit_to_budget, nearest_width

SHAPES = {"image": ((1, 8, 8), 17), "vector": ((2,), None)}
SMALL = {  # small depths, so that a sweep over widths stays quick
    "vae": {"latent_dim": 2, "layers": 1},
    "vae_iaf": {"latent_dim": 2, "layers": 1, "iaf_steps": 1},
    "realnvp": {"res_blocks": 1, "n_scales": 2, "coupling_layers": 2, "mlp_layers": 1},
    "glow": {"steps": 2, "n_levels": 2, "mlp_layers": 1, "vector_steps": 2},
    "maf": {"blocks": 2, "layers": 1},
    "iaf": {"blocks": 2, "layers": 1},
    "ffjord": {"layers": 1},
    "flowpp": {"res_blocks": 0, "steps": 1, "n_scales": 1, "coupling_layers": 2, "mlp_layers": 1},
}


def test_nearest_width_equals_brute_force():
    def params(w):  # a quadratic count, as a hidden layer's
        return 3 * w * w + 10 * w + 7

    for target in (50, 100, 1_000, 12_345, 300_000):
        brute = min(range(4, 2000), key=lambda w: (abs(params(w) - target), w))
        assert nearest_width(params, target, start=16) == brute, target


@pytest.mark.parametrize("kind", sorted(SHAPES))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_is_brought_to_the_budget_by_its_width_alone(name, kind):
    shape, levels = SHAPES[kind]
    budget = 20_000
    options = fit_to_budget(name, shape, levels, SMALL[name], budget)
    key = MODELS[name].width_option(shape)
    assert {k: v for k, v in options.items() if k != key} == SMALL[name]  # nothing but the width moved

    def count(w):
        return build_model(name, shape, levels, {**SMALL[name], key: w}).num_parameters()

    fitted = options[key]
    assert count(fitted) == build_model(name, shape, levels, options).num_parameters()
    assert budget / TOLERANCE <= count(fitted) <= budget * TOLERANCE
    for other in (fitted - 1, fitted + 1):  # no neighbouring width is nearer
        if other >= 4:
            assert abs(count(other) - budget) >= abs(count(fitted) - budget)


def test_a_budget_no_width_can_meet_is_an_error_naming_the_model():
    with pytest.raises(ValueError, match=r"'maf'.*hidden.*parameter budget 10.*parameter_budget"):
        fit_to_budget("maf", (1, 8, 8), 17, {"blocks": 5, "layers": 2}, 10)


def test_training_at_a_budget_records_the_fitted_width(tmp_path):
    import json

    from vaeflow.data import build_dataset
    from vaeflow.training.checkpoint import load_checkpoint, model_from_checkpoint
    from vaeflow.training.engine import train

    run = {
        "dataset": "digits",
        "dataset_options": {},
        "data_seed": 0,
        "model": "realnvp",
        "seed": 0,
        "parameter_budget": 30_000,
        "options": {"hidden_channels": 4, "res_blocks": 1, "n_scales": 2},
        "training": {
            "batch_size": 16,
            "lr": 1e-3,
            "warmup_steps": 2,
            "grad_clip": 100.0,
            "eval_every": 4,
            "checkpoint_every": 4,
            "val_examples": 32,
            "steps": 4,
        },
    }
    summary = train(run, build_dataset("digits", {}, 0), tmp_path, device="cpu", progress=False)
    saved = json.loads((tmp_path / "train.json").read_text())
    assert saved["options"]["hidden_channels"] > 4 and saved["run"]["options"]["hidden_channels"] == 4
    assert 30_000 / TOLERANCE <= summary["parameters"] <= 30_000 * TOLERANCE
    model = model_from_checkpoint(load_checkpoint(tmp_path / "checkpoint.pt"))
    assert model.num_parameters() == summary["parameters"]
