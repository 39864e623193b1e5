"""The anomaly probe and analysis against brute force and hand-computed answers."""

from __future__ import annotations

import io
import itertools
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from vaeflow.analysis import anomaly, figures
from vaeflow.data import PreparedDataset
from vaeflow.models import build_model
from vaeflow.probes import anomaly as probe_mod
from vaeflow.probes import applies

SETTINGS = {
    "seed": 3,
    "max_examples": 50,
    "max_examples_slow": 5,
    "slow_models": ["iaf"],
    "train_examples": 40,
    "iwae_k": 3,
    "dequantization_draws": 1,
    "batch_size": 100,
    "compressors": ["png", "zlib"],
    "typicality_batch": 2,
}


def _images(n: int, size: int, levels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, levels, size=(n, 1, size, size)).astype(np.uint8)


def _dataset(name: str, n: tuple[int, int, int], size: int, levels: int | None, seed: int) -> PreparedDataset:
    if levels is None:
        rng = np.random.default_rng(seed)
        train, val, test = (rng.normal(size=(k, 2)).astype(np.float32) for k in n)
    else:
        train, val, test = (_images(k, size, levels, seed + i) for i, k in enumerate(n))
    return PreparedDataset(name, levels, train, val, test, None, None, None, {}, 0, "test data")


# --- the probe ------------------------------------------------------------------------------


def test_applies_to_image_runs_only() -> None:
    assert applies("anomaly", "vae", "digits", image=True)
    assert applies("anomaly", "ffjord", "textures", image=True)
    assert not applies("anomaly", "vae", "toy2d", image=False)


def test_to_target_form_matches_pillow_bilinear_and_maps_levels() -> None:
    # Intensity images resized with Pillow's antialiased bilinear filter (what torch's antialias=True follows).
    src = _images(3, 14, 256, 0)
    out = probe_mod.to_target_form(src, 256, (1, 8, 8), 17)
    assert out.shape == (3, 1, 8, 8) and out.dtype == np.uint8 and out.max() <= 16
    for image, mapped in zip(src, out):
        pil = Image.fromarray(image[0].astype(np.float32) / 255.0, mode="F").resize((8, 8), Image.Resampling.BILINEAR)
        expected = np.round(np.clip(np.asarray(pil, dtype=np.float64), 0, 1) * 16)
        assert np.abs(mapped[0].astype(np.int64) - expected).max() <= 1
        assert (mapped[0] == expected).mean() > 0.9
    # levels alone: 0 -> 0, 255 -> 16, 128 -> round(128/255*16) = 8; same size is not resampled
    levels = np.array([[[[0, 128], [255, 64]]]], dtype=np.uint8)
    assert probe_mod.to_target_form(levels, 256, (1, 2, 2), 17).tolist() == [[[[0, 8], [16, 4]]]]
    # enlarging: a constant image stays constant, 16 of 17 levels -> 255 of 256
    flat = np.full((1, 1, 8, 8), 16, dtype=np.uint8)
    assert (probe_mod.to_target_form(flat, 17, (1, 14, 14), 256) == 255).all()
    # channels with no defined conversion (only grey <-> RGB is): refused, naming both counts
    with pytest.raises(probe_mod.UnconvertibleError, match="2-channel images cannot be brought to the model's 1"):
        probe_mod.to_target_form(np.zeros((1, 2, 8, 8), np.uint8), 256, (1, 8, 8), 17)


def test_synthetic_sets() -> None:
    test = _images(40, 6, 17, 1)
    rng = np.random.default_rng(0)
    noise = probe_mod.synthetic_set("noise", test, 17, rng)
    assert noise.shape == test.shape and noise.min() == 0 and noise.max() == 16
    counts = np.bincount(noise.ravel(), minlength=17)  # 1440 draws: about 85 per level
    assert counts.min() > 40 and counts.max() < 140
    constant = probe_mod.synthetic_set("constant", test, 17, rng)
    assert (constant == constant[:, :, :1, :1]).all() and len(np.unique(constant[:, 0, 0, 0])) > 5
    assert (probe_mod.synthetic_set("inverted", test, 17, rng).astype(int) == 16 - test.astype(int)).all()
    flipped = probe_mod.synthetic_set("flipped", test, 17, rng)
    assert (flipped[:, :, 0, :] == test[:, :, -1, :]).all() and (flipped[:, :, ::-1, :] == test).all()
    with pytest.raises(ValueError, match="unknown synthetic set"):
        probe_mod.synthetic_set("rotated", test, 17, rng)


def test_compressed_bits() -> None:
    images = np.concatenate([np.zeros((1, 1, 8, 8), np.uint8), _images(1, 8, 256, 2)])
    bits = probe_mod.compressed_bits(images, "zlib")
    assert bits.tolist() == [8 * len(zlib.compress(im.tobytes(), 9)) for im in images]
    png = probe_mod.compressed_bits(images, "png")
    assert png[0] < png[1]  # a constant image compresses shorter than noise
    for image, length in zip(images, png):  # lossless, and the length is that of the PNG file
        buffer = io.BytesIO()
        Image.fromarray(image[0], mode="L").save(buffer, format="PNG", compress_level=9)
        assert len(buffer.getvalue()) * 8 == length
        assert (np.asarray(Image.open(io.BytesIO(buffer.getvalue()))) == image[0]).all()
    with pytest.raises(ValueError, match="unknown compressor"):
        probe_mod.compressed_bits(images, "flif")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="missing iwae_k"):
        probe_mod.check_settings({k: v for k, v in SETTINGS.items() if k != "iwae_k"})
    with pytest.raises(ValueError, match="max_examples must be a positive integer"):
        probe_mod.check_settings({**SETTINGS, "max_examples": 0})
    with pytest.raises(ValueError, match="unknown models"):
        probe_mod.check_settings({**SETTINGS, "slow_models": ["nvp"]})


@pytest.fixture(scope="module")
def datasets() -> tuple[PreparedDataset, dict[str, PreparedDataset]]:
    data = _dataset("small", (30, 4, 12), 8, 17, 0)
    others = {
        "big": _dataset("big", (5, 5, 20), 14, 256, 10),
        "toy": _dataset("toy", (5, 5, 5), 0, None, 20),
        "small": data,
    }
    return data, others


def _bpd(log_p: torch.Tensor, num_dims: int) -> np.ndarray:
    return (-log_p.double() / (num_dims * math.log(2))).numpy()


def test_probe_scores_a_flow_as_evaluation_does(datasets) -> None:
    data, others = datasets
    torch.manual_seed(0)
    model = build_model(
        "realnvp",
        (1, 8, 8),
        17,
        {"hidden_channels": 4, "res_blocks": 1, "n_scales": 2, "coupling_layers": 2, "hidden": 8, "mlp_layers": 1},
    ).eval()
    out = probe_mod.probe(model, data, SETTINGS, others)
    assert out["sets"].tolist() == ["train", "test", "big", "noise", "constant", "inverted", "flipped"]
    assert out["set_roles"].tolist() == ["train", "in", "ood", "ood", "ood", "ood", "ood"]
    assert out["score_names"].tolist() == ["log_p"] and out["bits_per_dim"].shape[0] == 1
    counts = np.bincount(out["set_index"])
    assert counts.tolist() == [30, 12, 12, 12, 12, 12, 12]  # the whole test set; OOD sets as large
    # brute force: the fixed-seed uniform dequantisation of evaluation, one batch; the test images in the
    # documented order (after the train subset's permutation, one generator)
    rng = np.random.default_rng(SETTINGS["seed"])
    rng.permutation(len(data.train))
    test = torch.from_numpy(data.test[rng.permutation(len(data.test))].astype(np.float32))

    def brute(x: torch.Tensor) -> np.ndarray:
        u = torch.rand(x.shape, generator=torch.Generator().manual_seed(SETTINGS["seed"]))
        with torch.no_grad():
            return _bpd(model.log_prob(x + u), 64)

    bpd = out["bits_per_dim"][0]
    np.testing.assert_allclose(bpd[out["set_index"] == 1], brute(test), rtol=1e-5)
    np.testing.assert_allclose(bpd[out["set_index"] == 5], brute(16 - test), rtol=1e-5)
    np.testing.assert_allclose(bpd[out["set_index"] == 6], brute(test.flip(2)), rtol=1e-5)
    bits = out["compressed_bits"]
    assert bits.shape == (2, len(out["set_index"]))
    np.testing.assert_array_equal(bits[1][out["set_index"] == 1], probe_mod.compressed_bits(test.numpy(), "zlib"))
    assert int(out["num_dims"]) == 64 and int(out["levels"]) == 17 and bool(out["exact"])
    assert all(isinstance(v, np.ndarray) for v in out.values())


def test_probe_scores_a_vae_with_both_bounds_and_caps_slow_models(datasets) -> None:
    data, others = datasets
    torch.manual_seed(0)
    model = build_model("vae", (1, 8, 8), 17, {"latent_dim": 2, "hidden": 8, "layers": 1}).eval()
    out = probe_mod.probe(model, data, SETTINGS, others)
    assert out["score_names"].tolist() == ["bound", "iw_bound"]
    assert out["score_labels"].tolist() == ["ELBO", "iwae-3"]
    rng = np.random.default_rng(SETTINGS["seed"])
    rng.permutation(len(data.train))
    test = torch.from_numpy(data.test[rng.permutation(len(data.test))].astype(np.float32))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(SETTINGS["seed"])
        elbo = _bpd(model.log_prob(test), 64)
        torch.manual_seed(SETTINGS["seed"])
        iwae = _bpd(model.log_prob_bound(test, 3), 64)
    index = out["set_index"]
    np.testing.assert_allclose(out["bits_per_dim"][0][index == 1], elbo, rtol=1e-5)
    np.testing.assert_allclose(out["bits_per_dim"][1][index == 1], iwae, rtol=1e-5)
    slow = probe_mod.probe(model, data, {**SETTINGS, "slow_models": ["vae"]}, others)
    assert np.bincount(slow["set_index"]).tolist() == [5] * 7 and int(slow["max_examples"]) == 5


# --- the analysis ---------------------------------------------------------------------------


def _brute_auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_detection_against_pair_counts_with_non_finite_scores() -> None:
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(size=30).round(1), rng.normal(0.7, size=25).round(1)  # rounding makes ties
    auroc, aupr = anomaly.detection(neg, pos)
    assert auroc == pytest.approx(_brute_auroc(neg, pos), abs=1e-12)
    # non-finite: NaN and +inf are the most anomalous, -inf the least
    auroc, _ = anomaly.detection(np.array([1.0, 2.0, 3.0]), np.array([np.inf, 0.0, np.nan]))
    assert auroc == pytest.approx(6 / 9)
    auroc, _ = anomaly.detection(np.array([1.0, -np.inf]), np.array([0.5, np.inf]))
    assert auroc == pytest.approx(3 / 4)
    # AUPR by hand: scores 4 (pos), 3 (neg), 2 (pos), 1 (neg): AP = 1/2·1 + 1/2·2/3
    _, aupr = anomaly.detection(np.array([3.0, 1.0]), np.array([4.0, 2.0]))
    assert aupr == pytest.approx(0.5 + 1 / 3)


def test_p_below_chance_against_exact_enumeration() -> None:
    neg, pos = np.array([2.0, 3.5, 4.0, 6.0, 7.0]), np.array([1.0, 2.5, 3.0, 5.0])
    u_obs = sum(p > n for p in pos for n in neg)
    pooled = np.concatenate([neg, pos])
    us = [
        sum(pooled[i] > pooled[j] for i in c for j in set(range(9)) - set(c))
        for c in itertools.combinations(range(9), 4)
    ]
    exact = np.mean(np.array(us) <= u_obs)
    assert anomaly.p_below_chance(neg, pos) == pytest.approx(exact, rel=1e-9)
    assert anomaly.p_below_chance(np.ones(4), np.ones(4)) == 1.0


def test_typicality_complexity_and_entropy() -> None:
    entropy, bad = anomaly.entropy_estimate(np.array([1.0, 2.0, 6.0, np.inf, np.nan]))
    assert entropy == pytest.approx(3.0) and bad == 2
    np.testing.assert_allclose(anomaly.typicality(np.array([1.0, 5.0, np.inf]), 3.0), [2.0, 2.0, np.inf])
    np.testing.assert_allclose(anomaly.batch_means(np.arange(7.0), 3), [1.0, 4.0])
    with pytest.raises(ValueError, match="cannot form a batch"):
        anomaly.batch_means(np.arange(2.0), 3)
    # S = -log2 p - L per dim: 64 dims, NLL 3 bits/dim, L = 128 bits -> 3 - 2 = 1
    np.testing.assert_allclose(anomaly.complexity(np.array([3.0]), np.array([128.0]), 64), [1.0])
    r = anomaly.rankable(np.array([2.0, np.nan, -np.inf, 5.0, np.inf]))
    assert np.isfinite(r).all() and r[1] == r[4] > 5.0 and r[2] < 2.0 and r[0] == 2.0


def _write_probe(root: Path, dataset: str, model: str, seed: int, shift: float) -> Path:
    """A hand-made probe file: test NLL 1..8, a 'constant' OOD set with lower NLL (the likelihood failure)
    but tiny compressed length, and a 'noise' set with high NLL."""
    num_dims = 4
    train = np.array([3.0, 5.0, 4.0, 6.0]) + shift  # Ĥ = 4.5 + shift
    test = np.arange(1.0, 9.0) + shift  # 1..8
    constant = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, np.inf])  # one -inf log p: ranked most anomalous
    noise = np.arange(20.0, 28.0)
    bpd = np.concatenate([train, test, constant, noise])
    index = np.repeat([0, 1, 2, 3], [4, 8, 8, 8])
    bits = np.concatenate([np.full(4, 40.0), np.full(8, 40.0), np.full(8, 4.0), np.full(8, 120.0)])
    path = root / f"results/{dataset}/{model}/seed{seed}/probes/anomaly.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        sets=np.array(["train", "test", "constant", "noise"]),
        set_roles=np.array(["train", "in", "ood", "ood"]),
        set_kinds=np.array(["split", "split", "synthetic", "synthetic"]),
        set_index=index,
        set_conversions=np.array(["as is"] * 4),
        skipped_sets=np.array([], dtype=str),
        skipped_reasons=np.array([], dtype=str),
        score_names=np.array(["log_p"]),
        score_labels=np.array(["exact log p"]),
        bits_per_dim=bpd[None],
        compressors=np.array(["png"]),
        compressed_bits=bits[None],
        num_dims=np.array(num_dims),
    )
    return path


def test_analysis_end_to_end_on_hand_made_probes(tmp_path) -> None:
    paths = [_write_probe(tmp_path, "digits", "glow", seed, shift) for seed, shift in [(0, 0.0), (1, 0.5)]]
    per_seed = anomaly.load_metrics(paths, typicality_batch=2)
    assert len(per_seed) == 2 * 2 * 4  # seeds x OOD sets x methods
    row = per_seed.set_index(["seed", "ood", "method"])
    # seed 0, constant: 7 of 8 OOD scores below every test score, the inf above all -> AUROC 8/64
    expected = _brute_auroc(np.arange(1.0, 9.0), np.r_[np.arange(1, 8) / 10, np.inf])
    assert row.loc[(0, "constant", "likelihood"), "auroc"] == pytest.approx(expected)
    assert row.loc[(0, "constant", "likelihood"), "nonfinite_ood"] == 1
    assert row.loc[(0, "noise", "likelihood"), "auroc"] == 1.0
    # typicality: Ĥ = 4.5; |test - 4.5| = 3.5,2.5,1.5,.5,.5,1.5,2.5,3.5; |constant - 4.5| >= 3.8: all above -> 1
    assert row.loc[(0, "constant", "typicality"), "auroc"] == 1.0
    assert row.loc[(0, "constant", "typicality"), "entropy_bpd"] == pytest.approx(4.5)
    # batches of 2: test means 1.5,3.5,5.5,7.5 -> |.-4.5| = 3,1,1,3; constant means .15,.35,.55,inf -> >= 3.95
    assert row.loc[(0, "constant", "typicality_batch"), "auroc"] == 1.0
    # complexity: test 1..8 - 10 = -9..-2; constant .1..7 - 1 = -.9..-.3 (and inf): all above -> 1
    assert row.loc[(0, "constant", "complexity_png"), "auroc"] == 1.0
    # noise: 20..27 - 30 = -10..-3 against -9..-2: brute force
    assert row.loc[(0, "noise", "complexity_png"), "auroc"] == pytest.approx(
        _brute_auroc(np.arange(1.0, 9.0) - 10, np.arange(20.0, 28.0) - 30)
    )

    results = anomaly.aggregate(per_seed)
    assert len(results) == 8 and set(results["seeds"]) == {2}
    const = results.set_index(["ood", "method"]).loc[("constant", "likelihood")]
    seeds = per_seed[(per_seed["ood"] == "constant") & (per_seed["method"] == "likelihood")]["auroc"]
    assert const["auroc"] == pytest.approx(seeds.mean()) and const["auroc_sd"] == pytest.approx(seeds.std(ddof=1))
    assert const["seeds_below_half"] == 2 and const["nonfinite_ood"] == 2

    fail = anomaly.failures_table(results)
    assert fail[["in-distribution", "model", "OOD set"]].values.tolist() == [["digits", "glow", "constant"]]
    assert bool(fail["significant"].iloc[0]) and fail["AUROC typicality"].iloc[0] == 1.0
    assert fail["median png bits/dim OOD"].iloc[0] == 1.0 and fail["median png bits/dim in"].iloc[0] == 10.0
    summary = anomaly.summary_table(results).set_index("method")
    assert summary.loc["likelihood", "cases AUROC < 0.5"] == 1
    assert summary.loc["typicality", "raw failures above 0.5"] == 1
    wide = anomaly.auroc_table(results)
    assert wide.columns.tolist() == ["in-distribution", "model", "score", "noise", "constant"]
    assert wide["noise"].iloc[0] == "1.000 ± 0.000"
    remedies = anomaly.remedies_table(results)
    assert remedies.columns.tolist()[-4:] == ["likelihood", "typicality", "typicality_batch", "complexity_png"]
    values = anomaly.variables(results, {"typicality_batch": 2, "iwae_k": 4, "max_examples": 8})
    assert values["failures"] == 1 and values["worst_ood"] == "constant" and values["cases"] == 2
    assert (
        values["typicality_batch_size"] == 2 and "mean_auroc" in values["typicality_batch"]
    )  # setting and results apart
    assert values["complexity_png"]["fixes"] == 1 and values["likelihood"]["cases_below_half"] == 1
    assert values["worst_auroc"] == pytest.approx(round(const["auroc"], 3))
    prim_raw = results[results["primary"] & (results["method"] == "likelihood")]
    for model, group in prim_raw.groupby("model"):  # the raw likelihood per model: brute force over its cases
        assert values["by_model"][model] == {
            "mean_auroc": round(float(group["auroc"].mean()), 3),
            "cases": len(group),
            "cases_below_half": int((group["auroc"] < 0.5).sum()),
            "worst_auroc": round(float(group["auroc"].min()), 3),
        }
    pooled = values["by_likelihood"]
    assert sum(v["cases"] for v in pooled.values()) == values["cases"]
    assert sum(v["cases_below_half"] for v in pooled.values()) == values["failures"]
    exact = prim_raw[prim_raw["likelihood"].str.startswith("exact")]
    if len(exact):
        assert pooled["exact"]["cases"] == len(exact)
    yaml.safe_dump(values)  # plain types only
    assert anomaly.auroc_chart(results).to_dict()["facet"]
    quantiles = anomaly.bpd_quantiles(paths)
    q = quantiles.set_index("set")
    assert q.loc["constant", "nonfinite"] == 2 and q.loc["noise", "median"] == pytest.approx(23.5)
    assert anomaly.bpd_chart(quantiles).to_dict()["facet"]
    for chart in (anomaly.auroc_chart(results), anomaly.bpd_chart(quantiles)):
        assert len(chart.to_dict()["description"].split()) > 20  # alt text that says what it shows

    # the site's forms: "mean ± sd" on one line to 3 significant figures, medians test → OOD, no nan
    pm = "\u00a0±\u00a0"
    shown = anomaly.failures_shown(fail).table.iloc[0]
    assert shown["AUROC"] == figures.mean_sd(const["auroc"], const["auroc_sd"])
    assert shown["median png bits/dim, test → OOD"] == "10.0 → 1.00" and shown["typicality"] == "1.00"
    assert shown["significant"] == "yes"
    assert anomaly.auroc_shown(wide).table["noise"].iloc[0] == f"1.00{pm}0.00"
    metrics = anomaly.metrics_shown(anomaly.metrics_table(results))
    row = metrics.table.set_index(["OOD set", "method"]).loc[("constant", "likelihood")]
    assert row["AUROC"] == figures.mean_sd(const["auroc"], const["auroc_sd"]) and row["seeds < 0.5"] == "2 of 2"
    assert row["non-finite train / test / OOD"] == f"0 / 0 / {int(const['nonfinite_ood'])}"
    for form in (metrics, anomaly.remedies_shown(remedies), anomaly.summary_shown(summary.reset_index())):
        cells = " | ".join(form.table.astype(str).to_numpy().ravel())
        assert "nan" not in cells and " ± " not in cells
    assert anomaly.failures_shown(fail.iloc[:0]).notes == ["No case with AUROC below 0.5."]


# --- the smoke study's outputs (run once the rule is wired in) -------------------------------


@pytest.mark.workflow
def test_smoke_study_anomaly_tables(smoke_study) -> None:
    tables = smoke_study / "results/tables"
    config = yaml.safe_load((smoke_study / "config/smoke.yaml").read_text())
    images = [d for d in config["datasets"] if d != "toy2d"]
    metrics = pd.read_csv(tables / "anomaly_metrics.csv")
    assert set(metrics["dataset"]) == set(images) and set(metrics["model"]) == set(config["models"])
    assert metrics["auroc"].between(0, 1).all() and metrics["aupr"].between(0, 1).all()
    assert metrics[["auroc", "aupr", "n_in", "n_ood", "nonfinite_in", "nonfinite_ood"]].notna().all().all()
    assert (metrics["seeds"] == len(config["seeds"])).all()  # auroc_sd is empty with one seed, by design
    expected_ood = {*images, "noise", "constant", "inverted", "flipped"}
    for dataset, group in metrics.groupby("dataset"):
        assert set(group["ood"]) == expected_ood - {dataset}
    methods = {"likelihood", "typicality", "typicality_batch"} | {
        f"complexity_{c}" for c in config["analyses"]["anomaly"]["compressors"]
    }
    assert set(metrics["method"]) == methods
    auroc = pd.read_csv(tables / "anomaly_auroc.csv")
    assert len(auroc) == metrics[["dataset", "model", "likelihood"]].drop_duplicates().shape[0]
    remedies = pd.read_csv(tables / "anomaly_remedies.csv")
    assert len(remedies) == metrics[metrics["primary"]][["dataset", "model", "ood"]].drop_duplicates().shape[0]
    summary = pd.read_csv(tables / "anomaly_summary.csv")
    assert set(summary["method"]) == methods and summary["mean AUROC"].between(0, 1).all()
    failures = pd.read_csv(tables / "anomaly_failures.csv")
    raw = metrics[(metrics["method"] == "likelihood") & (metrics["auroc"] < 0.5)]
    assert len(failures) == len(raw)
    for stem in anomaly.TABLES:
        assert (tables / f"{stem}.md").is_file()
    for stem in anomaly.FIGURES:
        for ext in (".vl.json", ".svg", ".png"):
            assert (smoke_study / f"results/figures/{stem}{ext}").stat().st_size > 0
    values = yaml.safe_load((smoke_study / "results/variables/anomaly.yml").read_text())["anomaly"]
    assert values["failures"] == len(raw[raw["primary"]]) and 0 <= values["worst_auroc"] <= 1


@pytest.mark.workflow
def test_smoke_study_anomaly_probes(smoke_study) -> None:
    config = yaml.safe_load((smoke_study / "config/smoke.yaml").read_text())
    settings = config["analyses"]["anomaly"]
    for path in sorted(smoke_study.glob("results/*/*/seed*/probes/anomaly.npz")):
        with np.load(path) as a:
            assert path.parts[-5] != "toy2d"
            counts = np.bincount(a["set_index"])
            assert counts[1] <= settings["max_examples"] and (counts[2:] <= counts[1]).all()
            assert (a["compressed_bits"] > 0).all() and np.isfinite(a["compressed_bits"]).all()
            assert a["bits_per_dim"].shape == (len(a["score_names"]), len(a["set_index"]))


@pytest.mark.parametrize(
    ("exact", "bound", "opening"),
    [([0.9, 0.8, 0.7, 0.95], [0.85, 0.6, 0.9], "Not measurably"), ([0.9, 0.91, 0.92], [0.5, 0.52, 0.51], "Yes")],
)
def test_exact_against_bound_carries_the_welch_interval(exact, bound, opening):
    """The difference of mean AUROCs and its interval equal scipy's Welch t-test; the sentence says which way."""
    from scipy.stats import ttest_ind

    found = anomaly.exact_vs_bound(pd.Series(exact), pd.Series(bound))
    ci = ttest_ind(exact, bound, equal_var=False).confidence_interval(0.95)
    assert (found["low"], found["high"]) == (round(ci.low, 3), round(ci.high, 3))
    assert found["difference"] == round(sum(exact) / len(exact) - sum(bound) / len(bound), 3)
    assert found["verdict"].startswith(opening) and f"{found['low']:+.3f}" in found["verdict"]
