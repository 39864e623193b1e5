"""The sanity baselines against hand-computed and brute-force values (vaeflow.evaluation.baselines)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from vaeflow.cli import main
from vaeflow.data.store import PreparedDataset, array_sha256, save_prepared
from vaeflow.evaluation.baselines import (
    baselines,
    fit_gaussian,
    fit_independent_pixels,
    gaussian_log_prob,
    independent_pixels_log_prob,
    uniform_log_prob,
)


def _images(train, val, test, levels: int, name: str = "tiny") -> PreparedDataset:
    """Images of shape (N, 1, 1, D) from lists of pixel rows."""

    def arr(rows):
        return np.asarray(rows, dtype=np.uint8).reshape(len(rows), 1, 1, -1)

    return PreparedDataset(
        name=name,
        levels=levels,
        train=arr(train),
        val=arr(val),
        test=arr(test),
        train_labels=None,
        val_labels=None,
        test_labels=None,
        options={},
        seed=0,
        source="test",
    )


def _by_name(data: PreparedDataset) -> dict[str, dict]:
    return {entry["name"]: entry for entry, _ in baselines(data)}


# K = 3 levels, D = 2 pixels, four training images. Level counts per pixel:
#   pixel 0: level 0 three times, level 1 once, level 2 never -> p_0 = (4, 2, 1) / 7
#   pixel 1: level 0 never, level 1 three times, level 2 once -> p_1 = (1, 4, 2) / 7
# (add-one smoothing: (n + 1) / (N + K) = (n + 1) / 7).
TRAIN = [[0, 1], [0, 2], [1, 1], [0, 1]]
P0, P1 = [4 / 7, 2 / 7, 1 / 7], [1 / 7, 4 / 7, 2 / 7]


def test_independent_pixels_equal_hand_computed_probabilities() -> None:
    data = _images(TRAIN, val=[[0, 1]], test=[[2, 0], [1, 2]], levels=3)
    log_p = fit_independent_pixels(data.train, 3)
    np.testing.assert_allclose(np.exp(log_p), [P0, P1], rtol=1e-12)
    # test images: P([2, 0]) = 1/7 · 1/7 and P([1, 2]) = 2/7 · 2/7
    hand = [math.log(1 / 7 * 1 / 7), math.log(2 / 7 * 2 / 7)]
    np.testing.assert_allclose(independent_pixels_log_prob(log_p, data.test), hand, rtol=1e-12)
    found = _by_name(data)["independent_pixels"]
    # bits/dim = -mean_x Σ_d log2 p_d(x_d) / D, D = 2
    assert found["bits_per_dim"]["test"] == pytest.approx(-(math.log2(1 / 49) + math.log2(4 / 49)) / 2 / 2, rel=1e-12)
    assert found["bits_per_dim"]["val"] == pytest.approx(-math.log2(4 / 7 * 4 / 7) / 2, rel=1e-12)
    train_hand = [math.log2(P0[a] * P1[b]) for a, b in TRAIN]
    assert found["bits_per_dim"]["train"] == pytest.approx(-np.mean(train_hand) / 2, rel=1e-12)
    assert found["parameters"] == 2 * (3 - 1) and found["quantity"] == "exact discrete likelihood"
    assert found["reference"] and found["fitted_on"] == "train"


def test_independent_pixels_are_a_distribution_over_every_image() -> None:
    """Brute force: the masses of all K^D images sum to one, so the likelihood is an exact discrete one."""
    data = _images(TRAIN, val=[[0, 1]], test=[[0, 1]], levels=3)
    log_p = fit_independent_pixels(data.train, 3)
    every_image = np.array(list(itertools.product(range(3), repeat=2)), dtype=np.uint8).reshape(9, 1, 1, 2)
    assert np.exp(independent_pixels_log_prob(log_p, every_image)).sum() == pytest.approx(1.0, abs=1e-12)


def test_counts_do_not_depend_on_the_chunking(monkeypatch) -> None:
    from vaeflow.evaluation import baselines as module

    rng = np.random.default_rng(4)
    train = rng.integers(0, 7, size=(103, 1, 3, 4), dtype=np.uint8)
    whole = fit_independent_pixels(train, 7)
    monkeypatch.setattr(module, "CHUNK", 10)
    np.testing.assert_array_equal(fit_independent_pixels(train, 7), whole)
    brute = np.array([[(train.reshape(103, -1)[:, d] == k).sum() for k in range(7)] for d in range(12)])
    np.testing.assert_allclose(np.exp(whole), (brute + 1) / (103 + 7), rtol=1e-12)


def test_uniform_is_exactly_log2_k() -> None:
    rng = np.random.default_rng(0)
    for levels in (2, 17, 256):
        x = rng.integers(0, levels, size=(6, 1, 2, 3), dtype=np.uint8)
        data = _images(x.reshape(6, -1), x[:2].reshape(2, -1), x[2:].reshape(4, -1), levels)
        uniform = _by_name(data)["uniform"]
        assert uniform["bits_per_dim"] == {split: math.log2(levels) for split in ("train", "val", "test")}
        assert uniform["parameters"] == 0 and not uniform["reference"]
        # the per-example scores carry -D log K nats, which is log2 K bits/dim up to rounding
        scores = uniform_log_prob(x, levels)
        np.testing.assert_allclose(-scores / (6 * math.log(2)), math.log2(levels), rtol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_independent_pixels_never_cost_more_than_uniform_on_the_training_split(seed: int) -> None:
    rng = np.random.default_rng(seed)
    levels = 5
    # skewed levels, and one pixel that never varies
    train = np.minimum(rng.geometric(0.5, size=(40, 6)) - 1, levels - 1)
    train[:, 0] = 2
    data = _images(train, train[:3], train[3:9], levels)
    found = _by_name(data)
    assert found["independent_pixels"]["bits_per_dim"]["train"] <= found["uniform"]["bits_per_dim"]["train"]
    # and with uniform data too (no structure to find): still no worse on the training split
    flat = rng.integers(0, levels, size=(40, 6))
    found = _by_name(_images(flat, flat[:3], flat[3:9], levels))
    assert found["independent_pixels"]["bits_per_dim"]["train"] <= found["uniform"]["bits_per_dim"]["train"]


def test_gaussian_matches_scipy_on_seeded_data() -> None:
    rng = np.random.default_rng(7)
    cov_true = np.array([[2.0, 0.8], [0.8, 0.5]])
    train, val, test = (
        rng.multivariate_normal([1.0, -2.0], cov_true, size=n).astype(np.float32) for n in (400, 50, 60)
    )
    mean, cov = fit_gaussian(train)
    np.testing.assert_allclose(mean, train.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(train.astype(np.float64), rowvar=False, bias=True), rtol=1e-10)
    reference = multivariate_normal(mean, cov)
    np.testing.assert_allclose(
        gaussian_log_prob(mean, cov, test), reference.logpdf(test.astype(np.float64)), rtol=1e-10
    )

    data = PreparedDataset(
        name="toy",
        levels=None,
        train=train,
        val=val,
        test=test,
        train_labels=None,
        val_labels=None,
        test_labels=None,
        options={},
        seed=0,
        source="test",
    )
    [(entry, test_scores)] = baselines(data)
    assert entry["name"] == "gaussian" and entry["reference"] and entry["quantity"] == "exact density"
    assert entry["parameters"] == 2 + 3  # mean and the upper triangle of the covariance
    for split, x in (("train", train), ("val", val), ("test", test)):
        # bits/dim of a continuous density, as the flows report it: -log p / (D ln 2), nats -> bits
        expected = -reference.logpdf(x.astype(np.float64)).mean() / (2 * math.log(2))
        assert entry["bits_per_dim"][split] == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(test_scores, reference.logpdf(test.astype(np.float64)), rtol=1e-10)


def test_singular_covariance_is_named() -> None:
    x = np.zeros((10, 2), dtype=np.float32)
    x[:, 0] = np.arange(10)
    data = PreparedDataset(
        name="flat",
        levels=None,
        train=x,
        val=x,
        test=x,
        train_labels=None,
        val_labels=None,
        test_labels=None,
        options={},
        seed=0,
        source="test",
    )
    with pytest.raises(ValueError, match="'flat'.*singular"):
        baselines(data)


def _saved(tmp_path, data: PreparedDataset):
    npz = tmp_path / "data" / f"{data.name}.npz"
    save_prepared(data, npz, npz.with_suffix(".json"))
    return npz


def test_cli_writes_the_json_and_the_test_scores(tmp_path, capsys) -> None:
    labels = np.array([0, 1], dtype=np.int64)
    data = PreparedDataset(
        name="tiny",
        levels=3,
        train=np.asarray(TRAIN, np.uint8).reshape(4, 1, 1, 2),
        val=np.asarray([[0, 1]], np.uint8).reshape(1, 1, 1, 2),
        test=np.asarray([[2, 0], [1, 2]], np.uint8).reshape(2, 1, 1, 2),
        train_labels=np.zeros(4, np.int64),
        val_labels=np.zeros(1, np.int64),
        test_labels=labels,
        options={},
        seed=0,
        source="test",
    )
    npz = _saved(tmp_path, data)
    out, scores = tmp_path / "tiny" / "baselines.json", tmp_path / "tiny" / "baselines_test_scores.npz"
    assert main(["baselines", "--data", str(npz), "--out", str(out), "--scores", str(scores)]) == 0
    assert "tiny baseline independent pixels" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert (written["dataset"], written["levels"], written["num_dims"]) == ("tiny", 3, 2)
    assert written["data"]["arrays_sha256"]["test"] == array_sha256(data.test)
    assert written["data"]["manifest"] == str(npz.with_suffix(".json"))
    assert written["split_sizes"] == {"train": 4, "val": 1, "test": 2}
    entries = {entry["name"]: entry for entry in written["baselines"]}
    assert set(entries) == {"uniform", "independent_pixels"}
    for entry in entries.values():
        assert {"name", "description", "quantity", "parameters", "bits_per_dim", "reference"} <= set(entry)
    assert entries["uniform"]["bits_per_dim"]["test"] == math.log2(3)
    with np.load(out.parent / written["test_scores"]) as npz_scores:
        np.testing.assert_array_equal(npz_scores["labels"], labels)
        np.testing.assert_allclose(npz_scores["independent_pixels"], [math.log(1 / 49), math.log(4 / 49)], rtol=1e-12)
        assert -npz_scores["independent_pixels"].mean() / (2 * math.log(2)) == pytest.approx(
            entries["independent_pixels"]["bits_per_dim"]["test"], rel=1e-12
        )


def test_cli_refuses_levels_outside_the_manifest_and_writes_nothing(tmp_path, capsys) -> None:
    data = _images(TRAIN, val=[[0, 1]], test=[[0, 3]], levels=3, name="bad")  # level 3 with K = 3
    npz = _saved(tmp_path, data)
    out, scores = tmp_path / "bad" / "baselines.json", tmp_path / "bad" / "scores.npz"
    assert main(["baselines", "--data", str(npz), "--out", str(out), "--scores", str(scores)]) == 1
    err = capsys.readouterr().err
    assert "'bad'" in err and "'test'" in err and "0 … 2" in err and "prepare" in err
    assert not out.exists() and not scores.exists()
