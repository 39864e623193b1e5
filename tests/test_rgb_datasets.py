"""RGB datasets (cifar10) beside grey ones: the anomaly probe converts OOD sets between grey and RGB and says
so, the analysis shows conversions and skipped sets, and the high-frequency grids keep their colour."""

from __future__ import annotations

import base64
import io
import math
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vaeflow.analysis import anomaly
from vaeflow.analysis import high_frequency as hfa
from vaeflow.analysis.runs import ProbeResult
from vaeflow.data import IMAGE_DATASETS, PreparedDataset
from vaeflow.data.cifar_pickle import luma
from vaeflow.models import build_model
from vaeflow.probes import anomaly as probe_mod
from vaeflow.probes import high_frequency as hfp

ANOMALY = {
    "seed": 3,
    "max_examples": 6,
    "max_examples_slow": 5,
    "slow_models": ["iaf"],
    "train_examples": 4,
    "iwae_k": 2,
    "dequantization_draws": 1,
    "batch_size": 100,
    "compressors": ["zlib"],
}
NVP = {"hidden_channels": 4, "res_blocks": 1, "n_scales": 2, "coupling_layers": 2, "hidden": 8, "mlp_layers": 1}


def _dataset(name: str, channels: int, size: int, levels: int, seed: int, n: int = 10) -> PreparedDataset:
    rng = np.random.default_rng(seed)
    train, val, test = (rng.integers(0, levels, size=(n, channels, size, size)).astype(np.uint8) for _ in range(3))
    return PreparedDataset(name, levels, train, val, test, None, None, None, {}, 0, "test data")


# --- conversion of OOD sets between grey and RGB ------------------------------------------------------


def test_rgb_to_grey_is_bt601_luma_by_hand() -> None:
    # 0.299·200 + 0.587·100 + 0.114·50 = 124.2 -> 124; pure red 76.245 -> 76; (1, 1, 2): 1.114 -> 1;
    # (255, 255, 255) stays 255
    rgb = np.array([[[[200, 255]], [[100, 0]], [[50, 0]]], [[[1, 255]], [[1, 255]], [[2, 255]]]], dtype=np.uint8)
    assert rgb.shape == (2, 3, 1, 2)
    out = probe_mod.to_target_form(rgb, 256, (1, 1, 2), 256)
    assert out.tolist() == [[[[124, 76]]], [[[1, 255]]]]
    np.testing.assert_array_equal(out, luma(rgb))  # the data package's function, as cifar10's grey option
    # then to 17 levels: 124/255·16 = 7.78 -> 8 at every pixel of a constant 32x32 colour image shrunk to 8x8
    flat = np.broadcast_to(np.array([200, 100, 50], np.uint8)[None, :, None, None], (1, 3, 32, 32)).copy()
    assert (probe_mod.to_target_form(flat, 256, (1, 8, 8), 17) == 8).all()
    # on random images: luma first, then the grey path (resizing, levels) unchanged
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 3, 32, 32)).astype(np.uint8)
    np.testing.assert_array_equal(
        probe_mod.to_target_form(images, 256, (1, 28, 28), 256),
        probe_mod.to_target_form(luma(images), 256, (1, 28, 28), 256),
    )


def test_grey_to_rgb_repeats_the_channel() -> None:
    grey = np.array([[[[0, 16], [8, 4]]]], dtype=np.uint8)
    out = probe_mod.to_target_form(grey, 17, (3, 2, 2), 256)
    # 0 -> 0, 16 -> 255, 8 -> round(8/16·255) = 128 (127.5 rounds to even), 4 -> round(63.75) = 64; in R, G and B
    assert out.shape == (1, 3, 2, 2) and out.tolist() == [[[[0, 255], [128, 64]]] * 3]


def test_conversions_are_described_in_words() -> None:
    describe = probe_mod.describe_conversion
    assert describe((3, 32, 32), 256, (1, 28, 28), 256) == (
        "RGB→grey (ITU-R BT.601 luma); resized 32×32→28×28 (antialiased bilinear)"
    )
    assert describe((1, 8, 8), 17, (3, 32, 32), 256) == (
        "grey→RGB (channel repeated); resized 8×8→32×32 (antialiased bilinear); 17→256 levels"
    )
    assert describe((1, 28, 28), 256, (1, 28, 28), 256) == probe_mod.AS_IS == "as is"
    with pytest.raises(probe_mod.UnconvertibleError, match="4-channel images cannot be brought to the model's 3"):
        describe((4, 8, 8), 256, (3, 8, 8), 256)


def test_a_grey_model_scores_an_rgb_set_by_luma_and_records_a_skipped_set() -> None:
    data = _dataset("grey", 1, 8, 17, 0)
    # "bichrome" (2 channels) sorts before "colour": skipped, yet its draw is made, so later sets do not shift
    others = {
        "grey": data,
        "colour": _dataset("colour", 3, 8, 256, 10),
        "bichrome": _dataset("bichrome", 2, 8, 256, 20),
    }
    torch.manual_seed(0)
    model = build_model("realnvp", (1, 8, 8), 17, NVP).eval()
    out = probe_mod.probe(model, data, ANOMALY, others)
    assert out["sets"].tolist() == ["train", "test", "colour", "noise", "constant", "inverted", "flipped"]
    assert out["set_conversions"].tolist() == [
        "as is",
        "as is",
        "RGB→grey (ITU-R BT.601 luma); 256→17 levels",
        "as is",
        "as is",
        "as is",
        "as is",
    ]
    assert out["skipped_sets"].tolist() == ["bichrome"]
    assert "bichrome (2, 8, 8) vs grey (1, 8, 8)" in out["skipped_reasons"][0]
    assert "only grey (1) and RGB (3)" in out["skipped_reasons"][0]
    # the scored colour images are the luma images at 17 levels: their zlib lengths, from the documented draws
    rng = np.random.default_rng(ANOMALY["seed"])
    rng.permutation(len(data.train))
    test_order = rng.permutation(len(data.test))[:6]
    rng.permutation(10)  # bichrome's draw
    chosen = others["colour"].test[rng.permutation(10)[:6]]
    expected = np.round(luma(chosen).astype(np.float64) / 255 * 16).astype(np.uint8)
    bits = [8 * len(zlib.compress(im.tobytes(), 9)) for im in expected]
    colour = out["set_index"] == 2
    assert out["compressed_bits"][0, colour].tolist() == bits
    assert out["compressed_bits"][0, out["set_index"] == 1].tolist() == [
        8 * len(zlib.compress(im.tobytes(), 9)) for im in data.test[test_order]
    ]
    assert np.isfinite(out["bits_per_dim"]).all()


def test_an_rgb_model_scores_a_grey_set_with_the_channel_repeated() -> None:
    data = _dataset("colour", 3, 8, 256, 1)
    others = {"grey": _dataset("grey", 1, 8, 17, 2), "colour": data}
    torch.manual_seed(0)
    model = build_model("realnvp", (3, 8, 8), 256, NVP).eval()
    out = probe_mod.probe(model, data, ANOMALY, others)
    assert out["sets"][2] == "grey" and len(out["skipped_sets"]) == 0
    assert out["set_conversions"][2] == "grey→RGB (channel repeated); 17→256 levels"
    assert int(out["num_dims"]) == 3 * 8 * 8 and np.isfinite(out["bits_per_dim"]).all()


# --- the analysis shows conversions and skipped sets --------------------------------------------------


def _write_probe(root: Path, model: str, seed: int) -> Path:
    """digits vs a converted cifar10 set (lower NLL: a failure) and a skipped set."""
    train, test = np.array([3.0, 5.0, 4.0, 6.0]), np.arange(1.0, 9.0)
    cifar = np.arange(1.0, 9.0) / 10
    bpd = np.concatenate([train, test, cifar])
    index = np.repeat([0, 1, 2], [4, 8, 8])
    bits = np.concatenate([np.full(4, 40.0), np.full(8, 40.0), np.full(8, 4.0)])
    path = root / f"results/digits/{model}/seed{seed}/probes/anomaly.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        sets=np.array(["train", "test", "cifar10"]),
        set_roles=np.array(["train", "in", "ood"]),
        set_kinds=np.array(["split", "split", "dataset"]),
        set_index=index,
        set_conversions=np.array(
            ["as is", "as is", "RGB→grey (ITU-R BT.601 luma); resized 32×32→8×8 (antialiased bilinear); 256→17 levels"]
        ),
        skipped_sets=np.array(["pairs"]),
        skipped_reasons=np.array(["pairs (2, 8, 8) vs digits (1, 8, 8): no"]),
        score_names=np.array(["log_p"]),
        score_labels=np.array(["exact log p"]),
        bits_per_dim=bpd[None],
        compressors=np.array(["png"]),
        compressed_bits=bits[None],
        num_dims=np.array(4),
    )
    return path


def test_the_tables_say_how_each_ood_set_was_converted_and_show_skipped_ones(tmp_path) -> None:
    paths = [_write_probe(tmp_path, "glow", seed) for seed in (0, 1)]
    per_seed = anomaly.load_metrics(paths, typicality_batch=2)
    methods = ["likelihood", "typicality", "typicality_batch", "complexity_png"]
    assert len(per_seed) == 2 * 2 * 4  # seeds x (cifar10, pairs) x methods: the skipped set is kept
    skipped = per_seed[~per_seed["scored"]]
    assert set(skipped["ood"]) == {"pairs"} and skipped["auroc"].isna().all() and (skipped["n_ood"] == 0).all()
    assert (skipped["ood_conversion"] == "skipped: pairs (2, 8, 8) vs digits (1, 8, 8): no").all()
    cifar = per_seed[per_seed["ood"] == "cifar10"]
    assert cifar["scored"].all() and cifar["ood_conversion"].str.startswith("RGB→grey (ITU-R BT.601 luma)").all()
    assert cifar.set_index(["seed", "method"]).loc[(0, "likelihood"), "auroc"] == 0.0  # all 8 below every test NLL

    results = anomaly.aggregate(per_seed)
    wide = anomaly.auroc_table(results)
    assert wide.columns.tolist() == ["in-distribution", "model", "score", "cifar10", "pairs"]
    assert wide.loc[0, "pairs"] == "skipped" and wide.loc[0, "cifar10"] == "0.000 ± 0.000"
    remedies = anomaly.remedies_table(results).set_index("OOD set")
    assert remedies.loc["cifar10", "OOD conversion"].startswith("RGB→grey (ITU-R BT.601 luma); resized 32×32→8×8")
    assert remedies.loc["pairs", "OOD conversion"].startswith("skipped: pairs (2, 8, 8)")
    assert remedies.loc["pairs", methods].tolist() == ["skipped"] * 4
    fail = anomaly.failures_table(results)
    assert fail["OOD set"].tolist() == ["cifar10"] and fail["OOD conversion"].iloc[0].startswith("RGB→grey")
    summary = anomaly.summary_table(results).set_index("method")
    assert summary["cases"].tolist() == [1] * 4 and summary["cases skipped"].tolist() == [1] * 4
    assert summary.loc["likelihood", "mean AUROC"] == 0.0
    metrics = anomaly.metrics_table(results)
    assert metrics["auroc"].isna().sum() == 4 and (~metrics["scored"]).sum() == 4
    values = anomaly.variables(results, {"typicality_batch": 2})
    assert values["cases"] == 1 and values["failures"] == 1 and values["skipped"] == 1
    assert values["skipped_sets"] == ["digits vs pairs: pairs (2, 8, 8) vs digits (1, 8, 8): no"]
    assert values["ood_conversions"]["digits"]["cifar10"].startswith("RGB→grey")
    assert values["mean_raw_auroc"] == {"digits": {"cifar10": 0.0}}
    yaml.safe_dump(values)  # plain types only, no NaN from the skipped set
    chart = anomaly.auroc_chart(results).to_dict()
    assert {row["ood"] for row in chart["datasets"][next(iter(chart["datasets"]))]} == {"cifar10"}


def test_the_analysis_takes_the_image_datasets_from_the_data_package_without_torch() -> None:
    assert anomaly.IMAGE_DATASETS is IMAGE_DATASETS and "cifar10" in anomaly.IMAGE_DATASETS
    code = "import sys, vaeflow.analysis.anomaly; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- high-frequency grids in colour -------------------------------------------------------------------


HF = {
    "seed": 0,
    "cutoff": 0.25,
    "samples": 4,
    "temperatures": [1.0],
    "temperature_samples": 2,
    "slow_models": [],
    "max_samples_slow": 2,
    "batch_size": 16,
    "grid_samples": 2,
    "completion_models": ["realnvp"],
    "completion_examples": 2,
    "completion_steps": 1,
    "completion_lr": 0.05,
    "completion_iwae_k": 2,
    "inpaint_mask": "centre",
    "completions_shown": 1,
    "bootstrap": 20,
    "confidence": 0.9,
    "grid_dataset": "colour",
}


def _decode(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_rgb_image_urls_keep_colour_and_mark_missing_pixels() -> None:
    image = np.zeros((3, 1, 2))
    image[:, 0, 0] = [200, 100, 50]
    image[:, 0, 1] = [255, 0, np.nan]  # one channel missing: the pixel is missing
    decoded = _decode(hfa.image_url(image, levels=256, zoom=2))
    assert decoded.shape == (2, 4, 3)
    np.testing.assert_array_equal(decoded[:, :2], [[[200, 100, 50]] * 2] * 2)
    np.testing.assert_array_equal(decoded[:, 2:], [[hfa.MISSING_RGB] * 2] * 2)
    # a one-channel (1, H, W) image is drawn grey, as an (H, W) one: 8 of 17 levels -> 128
    assert (_decode(hfa.image_url(np.full((1, 1, 1), 8.0), levels=17, zoom=1)) == 128).all()
    with pytest.raises(ValueError, match="RGB"):
        hfa.image_url(np.zeros((2, 4, 4)), levels=17, zoom=1)


def test_rgb_spectra_are_the_sum_of_the_channel_spectra() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 3, 8, 8))
    total = hfp.power_spectrum(rgb, 256)
    by_channel = sum(hfp.power_spectrum(rgb[:, c], 256) for c in range(3))
    np.testing.assert_allclose(total, by_channel)
    x = rgb / 255.0
    energy = ((x - x.mean(axis=(2, 3), keepdims=True)) ** 2).sum(axis=(1, 2, 3))  # Parseval, each channel's mean
    np.testing.assert_allclose(total.sum(axis=(1, 2)), energy)


def test_an_rgb_run_keeps_its_grid_and_completions_in_colour(tmp_path) -> None:
    data = _dataset("colour", 3, 8, 256, 5)
    torch.manual_seed(0)
    model = build_model("realnvp", (3, 8, 8), 256, {"hidden_channels": 4, "res_blocks": 0, "n_scales": 1}).eval()
    arrays = hfp.probe(model, data, HF, {})
    assert arrays["grid"].shape == (4, 3, 8, 8)  # test images and T = 1 samples, two each, three channels
    np.testing.assert_array_equal(arrays["grid"][arrays["grid_set"] == 0], data.test[:2])
    assert arrays["truth_shown"].shape == (1, 3, 8, 8) and arrays["completion_shown"].shape == (2, 2, 1, 3, 8, 8)
    np.testing.assert_array_equal(
        arrays["truth_shown"], data.test[np.sort(np.random.default_rng(0).choice(10, size=2, replace=False))][:1]
    )
    result = ProbeResult("colour", "realnvp", 0, "high_frequency", tmp_path / "x.npz", arrays)
    spec = hfa.samples_chart([result], "colour").to_dict()
    values = spec["data"]["values"]
    first = _decode(values[0]["url"])  # the first test image, 4x zoomed: its own colours, pixel by pixel
    np.testing.assert_array_equal(first[::4, ::4], np.moveaxis(data.test[0], 0, -1))
    assert not (first[..., 0] == first[..., 1]).all()  # not grey
    completions = hfa.completions_chart([result], "colour").to_dict()["data"]["values"]
    observed = _decode(completions[2]["url"])  # row 2: the observed pixels of the inpainting task
    missing = arrays["task_missing"][0]
    assert (observed[::5, ::5][missing] == hfa.MISSING_RGB).all()
    np.testing.assert_array_equal(observed[::5, ::5][~missing], np.moveaxis(arrays["truth_shown"][0], 0, -1)[~missing])
    assert math.isfinite(float(arrays["seconds"].sum()))
