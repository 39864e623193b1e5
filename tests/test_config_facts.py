"""The facts the study-configuration check reads without torch or data are the facts the models
and datasets act on: each scale rule against its model's constructor, each dataset's example
shape and split sizes against the data it builds."""

import itertools

import numpy as np
import pytest

from vaeflow.data import build_dataset, example_shape, split_sizes
from vaeflow.data.splits import holdout_size, stratified_sizes
from vaeflow.models.multiscale import SCALE_RULES

TINY = {  # the smallest networks, so that building hundreds of models is quick
    "realnvp": {"hidden_channels": 1, "res_blocks": 0},
    "glow": {"hidden_channels": 1, "steps": 1},
    "flowpp": {"hidden_channels": 1, "res_blocks": 0, "components": 1, "steps": 1, "dequant_steps": 1},
}
SHAPES = [(1, 8, 8), (1, 14, 14), (1, 28, 28), (3, 32, 32), (1, 7, 7), (1, 2, 6), (1, 16, 12), (2, 4, 2), (1, 2, 1)]


def test_each_scale_rule_belongs_to_a_model_and_its_default_is_the_constructors():
    from vaeflow.models import MODELS, model_options

    for name, rule in SCALE_RULES.items():
        assert model_options(MODELS[name])[rule.option] == rule.default, name


@pytest.mark.parametrize("name", sorted(SCALE_RULES))
def test_a_scale_rule_accepts_exactly_what_its_model_builds(name):
    from vaeflow.models import build_model

    rule = SCALE_RULES[name]
    for shape, value in itertools.product(SHAPES, range(1, 7)):
        try:
            build_model(name, shape, 17, {**TINY[name], rule.option: value})
            built = True
        except ValueError as exc:
            built = False
            message = str(exc)
        fits = rule.fits(value, *shape[1:])
        assert built == fits, (name, shape, value)
        if not built and rule.largest(*shape[1:]):
            assert f"{rule.option}={value} does not fit data_shape {shape}" in message
            assert f"use {rule.option} <= {rule.largest(*shape[1:])} for this shape" in message
        assert rule.largest(*shape[1:]) == max([v for v in range(1, 9) if rule.fits(v, *shape[1:])], default=0)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("digits", {}),
        ("digits", {"val_fraction": 0.15, "test_fraction": 0.3}),
        ("mnist", {"size": 14}),
        ("mnist", {"size": 28, "val_fraction": 0.05, "test_fraction": 0.33}),
        ("textures", {"patch": 8, "stride": 16, "images": ["brick", "grass", "moon"]}),
        ("textures", {"patch": 16, "stride": 7, "images": ["coins", "camera"], "val_fraction": 0.2}),
        ("toy2d", {"n_train": 123, "n_val": 4, "n_test": 5}),
    ],
)
def test_example_shape_and_split_sizes_are_those_of_the_built_data(name, options):
    data = build_dataset(name, options, seed=3)
    assert tuple(data.train.shape[1:]) == example_shape(name, options)
    assert {split: len(getattr(data, split)) for split in ("train", "val", "test")} == split_sizes(name, options)


def test_the_split_sizes_are_scikit_learns():
    """The sizes :func:`stratified_sizes` and :func:`holdout_size` give are those scikit-learn's
    float ``test_size`` makes (the splits pass the sizes to it as integers)."""
    from sklearn.model_selection import train_test_split

    for n, val, test in itertools.product((1797, 5000, 60000, 50000, 333), (0.05, 0.1, 0.15, 0.3), (0.1, 0.2, 0.33)):
        labels = np.arange(n) % 10
        rest, held = train_test_split(np.arange(n), test_size=test, stratify=labels, random_state=0)
        train, valid = train_test_split(rest, test_size=val / (1 - test), stratify=labels[rest], random_state=0)
        assert stratified_sizes(n, val, test) == {"train": len(train), "val": len(valid), "test": len(held)}
        assert holdout_size(n, val) == len(
            train_test_split(np.arange(n), test_size=val, stratify=labels, random_state=0)[1]
        )


def test_full_size_datasets_are_described_without_their_files():
    assert example_shape("mnist_full", {"path": "/nowhere"}) == (1, 28, 28)
    assert split_sizes("fashion_mnist", {"val_fraction": 0.2}) == {"train": 48000, "val": 12000, "test": 10000}
    assert example_shape("cifar10", {"grey": True}) == (1, 32, 32) and example_shape("cifar10", {}) == (3, 32, 32)
    assert split_sizes("cifar10", None) == {"train": 45000, "val": 5000, "test": 10000}
    with pytest.raises(ValueError, match="option val_fraction must be a number in"):
        split_sizes("mnist_full", {"val_fraction": 1.5})
