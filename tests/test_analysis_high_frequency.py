"""The high_frequency probe and analysis: spectra against known answers, completions against a
Gaussian whose maximiser is known, bootstrap intervals against the delta method, and the smoke
study's tables."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from vaeflow.analysis import figures
from vaeflow.analysis import high_frequency as hfa
from vaeflow.analysis.runs import ProbeResult
from vaeflow.data import PreparedDataset
from vaeflow.models import build_model
from vaeflow.models.base import DensityModel
from vaeflow.probes import applies
from vaeflow.probes import high_frequency as hfp

SETTINGS = {
    "seed": 0,
    "cutoff": 0.25,
    "samples": 40,
    "temperatures": [0.5, 1.0],
    "temperature_samples": 20,
    "slow_models": ["maf"],
    "max_samples_slow": 10,
    "batch_size": 16,
    "grid_samples": 3,
    "completion_models": ["vae", "realnvp"],
    "completion_examples": 4,
    "completion_steps": 3,
    "completion_lr": 0.05,
    "completion_iwae_k": 2,
    "inpaint_mask": "centre",
    "completions_shown": 2,
    "bootstrap": 200,
    "confidence": 0.9,
    "grid_dataset": "tiny",
}


# --- spectra -------------------------------------------------------------------------------------


def test_power_spectrum_obeys_parseval() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(5, 1, 12, 10)).astype(float)
    power = hfp.power_spectrum(x, 256)
    y = x / 255.0
    centred = y - y.mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(power.sum(axis=(1, 2)), (centred**2).sum(axis=(1, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_a_pure_sinusoid_puts_all_its_power_in_its_radial_bin(k: int) -> None:
    n = 16
    column = np.arange(n)
    image = 0.5 * 255 * (1 + np.cos(2 * np.pi * k * column / n))[None, :].repeat(n, axis=0)
    summary = hfp.spectral_summary(image[None, None], 256, cutoff=0.25)
    radial = summary["radial"][0]
    # the power at (0, ±k) sits in bin k; everything else is zero
    assert np.argmax(radial) == k
    np.testing.assert_allclose(np.delete(radial, k), 0.0, atol=1e-20)
    expected_fraction = 1.0 if k / n > 0.25 else 0.0
    assert summary["hf_power"][0] / summary["total_power"][0] == pytest.approx(expected_fraction, abs=1e-12)
    # bin k averages the two nonzero coefficients over every coefficient at that radius
    index, _ = hfp.radial_bins(n, n)
    total = summary["total_power"][0]
    assert radial[k] == pytest.approx(total / (index == k).sum(), rel=1e-12)


def test_a_diagonal_sinusoid_lands_at_its_radius() -> None:
    n, k = 16, 3
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    image = 127.5 * (1 + np.cos(2 * np.pi * k * (i + j) / n))
    radial = hfp.spectral_summary(image[None, None], 256, 0.25)["radial"][0]
    assert np.argmax(radial) == round(k * math.sqrt(2))  # |f| = 3·√2/16 ≈ 0.265 → bin 4


def test_radial_bins_match_a_loop_over_coefficients() -> None:
    h, w = 8, 12
    index, centres = hfp.radial_bins(h, w)
    n = min(h, w)
    for a in range(h):
        for b in range(w):
            fy = a / h if a < (h + 1) // 2 else (a - h) / h
            fx = b / w if b < (w + 1) // 2 else (b - w) / w
            k = round(math.hypot(fy, fx) * n)
            assert index[a, b] == (k if k <= n // 2 else -1)
    np.testing.assert_allclose(centres, np.arange(n // 2 + 1) / n)


def test_white_noise_has_a_flat_spectrum_and_the_area_fraction_above_the_cutoff() -> None:
    rng = np.random.default_rng(1)
    sigma, n = 10.0, 16
    x = 128 + sigma * rng.standard_normal((4000, 1, n, n))
    summary = hfp.spectral_summary(x, 256, cutoff=0.25)
    radial = summary["radial"].mean(axis=0)
    variance = (sigma / 255) ** 2
    # E|X(f)|²/(HW) = σ²·(1 - 0) for f ≠ 0 (mean removal only touches the DC coefficient)
    np.testing.assert_allclose(radial[1:], variance, rtol=0.05)
    assert radial[0] == pytest.approx(0.0, abs=1e-20)
    above = (hfp.frequency_radius(n, n) > 0.25).sum()
    fraction = summary["hf_power"].sum() / summary["total_power"].sum()
    assert fraction == pytest.approx(above / (n * n - 1), rel=0.02)


def test_spectra_refuse_non_finite_pixels() -> None:
    x = np.zeros((2, 1, 4, 4))
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        hfp.power_spectrum(x, 17)


# --- masks and the baselines -----------------------------------------------------------------------


def test_masks_hide_the_right_pixels() -> None:
    centre = hfp.inpaint_mask((1, 14, 14), "centre")
    assert centre.sum() == 49 and centre[0, 3:10, 3:10].all()
    lower = hfp.inpaint_mask((1, 8, 8), "lower_half")
    assert lower[0, 4:].all() and not lower[0, :4].any()
    decimated = hfp.decimation_mask((1, 8, 8))
    assert (~decimated).sum() == 16 and not decimated[0, ::2, ::2].any()


def test_linear_upsampling_reproduces_a_plane_and_keeps_the_observed_pixels() -> None:
    i, j = np.meshgrid(np.arange(8.0), np.arange(10.0), indexing="ij")
    plane = (3.0 * i + 2.0 * j + 1.0)[None, None]
    up = hfp.linear_upsample(plane)
    np.testing.assert_allclose(up[0, 0, :7, :9], plane[0, 0, :7, :9], atol=1e-12)
    np.testing.assert_allclose(up[0, 0, ::2, ::2], plane[0, 0, ::2, ::2], atol=1e-12)
    np.testing.assert_allclose(up[0, 0, 7, :], up[0, 0, 6, :])  # beyond the last observed row: held constant


# --- completion against a known maximiser ----------------------------------------------------------


class GaussianModel(DensityModel):
    """log p(x) = -½‖x − m‖²/s²: the completion that maximises it is m on the missing pixels."""

    bound_name = "ELBO"

    def __init__(self, target: torch.Tensor, levels: int, discrete: bool) -> None:
        super().__init__(tuple(target.shape), levels)
        self.target = torch.nn.Parameter(target.clone())
        self.discrete = discrete
        self.exact = not discrete

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x - self.target) ** 2).flatten(1).sum(1) / 4.0

    def log_prob_bound(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return self.log_prob(x)

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        out = self.target.detach().expand(n, *self.data_shape).clone()
        out[::3] = float("nan")  # every third sample non-finite
        return out

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x).mean()


@pytest.mark.parametrize("discrete", [True, False])
def test_completion_climbs_to_the_maximiser_and_keeps_the_observed_pixels(discrete: bool) -> None:
    levels = 17
    g = torch.Generator().manual_seed(0)
    target = torch.randint(2, 14, (1, 6, 6), generator=g).float()
    # the continuous density's maximiser in level units is the bin centre target + ½ → completion target
    model = GaussianModel(target + (0.0 if discrete else 0.5), levels, discrete)
    truth = torch.randint(0, levels, (3, 1, 6, 6), generator=g).float()
    missing = torch.as_tensor(hfp.inpaint_mask((1, 6, 6), "centre"))
    start = truth.clone()
    start[:, missing] = 8.0
    filled, before, after = hfp.complete(model, truth, missing, start, steps=400, lr=0.1, iwae_k=1)
    torch.testing.assert_close(filled[:, ~missing], truth[:, ~missing])
    torch.testing.assert_close(filled[:, missing], target[missing].expand(3, -1), atol=0.05, rtol=0)
    assert (after > before).all()
    assert all(p.requires_grad for p in model.parameters())  # restored after the optimisation


def test_draw_drops_and_counts_non_finite_samples() -> None:
    model = GaussianModel(torch.ones(1, 4, 4), 17, discrete=False)
    images, bad = hfp.draw(model, 10, 1.0, batch=4)
    # batches of 4, 4, 2; rows 0 and 3 of each batch of 4 and row 0 of the last are NaN
    assert bad == 5 and images.shape == (5, 1, 4, 4) and np.isfinite(images).all()


# --- statistics ----------------------------------------------------------------------------------


def test_bootstrap_interval_matches_the_delta_method() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    total = rng.gamma(4.0, 1.0, size=n)
    hf = total * rng.beta(3.0, 7.0, size=n)
    ratio = hf.sum() / total.sum()
    se = np.sqrt(np.var(hf - ratio * total, ddof=1) / n) / total.mean()
    estimate, low, high = hfa.bootstrap_fraction([(hf, total)], resamples=2000, confidence=0.95)
    assert estimate == pytest.approx(ratio)
    assert (high - low) / 2 == pytest.approx(1.96 * se, rel=0.12)
    assert low < ratio < high


def test_bootstrap_averages_the_seeds_and_collapses_for_a_constant_fraction() -> None:
    total = np.arange(1.0, 51.0)
    groups = [(0.2 * total, total), (0.4 * total, total)]
    estimate, low, high = hfa.bootstrap_fraction(groups, resamples=100, confidence=0.9)
    assert estimate == pytest.approx(0.3) and low == pytest.approx(0.3) and high == pytest.approx(0.3)


def test_spectral_distance_counts_decades_and_ignores_dc() -> None:
    data = np.array([5.0, 1.0, 0.1, 0.01])
    assert hfa.spectral_distance(data, data) == 0.0
    assert hfa.spectral_distance(10 * data, data) == pytest.approx(1.0)
    assert hfa.spectral_distance(np.array([99.0, 1.0, 1.0, 1.0]), np.array([0.0, 1.0, 0.01, 1.0])) == pytest.approx(
        2 / 3
    )


def test_verdict_needs_the_intervals_to_separate() -> None:
    data = {"hf ci low": 0.30, "hf ci high": 0.34}
    assert hfa._verdict({"hf ci low": 0.20, "hf ci high": 0.29}, data) == "yes"
    assert hfa._verdict({"hf ci low": 0.35, "hf ci high": 0.40}, data) == "no"
    assert hfa._verdict({"hf ci low": 0.25, "hf ci high": 0.31}, data) == "not resolved"


def test_psnr_of_a_known_error() -> None:
    assert hfa.psnr(np.array([0.01, 0.01])) == pytest.approx(20.0)
    assert hfa.psnr(np.array([0.0])) == math.inf


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="cutoff"):
        hfp.check_settings({**SETTINGS, "cutoff": 0.9})
    with pytest.raises(ValueError, match="lacks samples"):
        hfp.check_settings({k: v for k, v in SETTINGS.items() if k != "samples"})
    with pytest.raises(ValueError, match="unknown key"):
        hfp.check_settings({**SETTINGS, "sample": 3})
    with pytest.raises(ValueError, match="flowpp"):
        hfp.check_settings({**SETTINGS, "completion_models": ["flowpp"]})
    with pytest.raises(ValueError, match="bootstrap"):
        hfa.check_settings({**SETTINGS, "bootstrap": 1})
    assert applies("high_frequency", "vae", "mnist", True) and not applies("high_frequency", "vae", "toy2d", False)


# --- the probe end to end on tiny untrained models, and the analysis of its arrays ----------------


def _tiny_dataset() -> PreparedDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 17, size=(90, 1, 8, 8)).astype(np.uint8)
    return PreparedDataset(
        name="tiny",
        levels=17,
        train=images[:50],
        val=images[50:60],
        test=images[60:],
        train_labels=None,
        val_labels=None,
        test_labels=None,
        options={},
        seed=0,
        source="test",
    )


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> list[ProbeResult]:
    data = _tiny_dataset()
    results = []
    for name, options in (
        ("vae", {"latent_dim": 2, "hidden": 8, "layers": 1}),
        ("realnvp", {"hidden_channels": 4, "res_blocks": 0, "n_scales": 1}),
        ("maf", {"blocks": 1, "hidden": 8, "layers": 1}),
    ):
        for seed in (0, 1):
            torch.manual_seed(seed)
            model = build_model(name, (1, 8, 8), 17, options).eval()
            torch.manual_seed(0)
            arrays = hfp.probe(model, data, SETTINGS, {})
            path = tmp_path_factory.mktemp("r") / f"tiny/{name}/seed{seed}/probes/high_frequency.npz"
            results.append(ProbeResult("tiny", name, seed, "high_frequency", path, arrays))
    return results


def test_probe_arrays_are_consistent(tiny_results) -> None:
    data = _tiny_dataset()
    by_model = {(r.model, r.seed): r.arrays for r in tiny_results}
    vae, nvp, maf = by_model[("vae", 0)], by_model[("realnvp", 0)], by_model[("maf", 0)]
    assert list(vae["set_name"]) == ["data", "samples", "decoder_mean", "reconstruction_mean", "reconstruction_sample"]
    assert list(nvp["set_name"]) == ["data", "samples", "samples"] and list(nvp["set_temperature"][1:]) == [0.5, 1.0]
    assert list(maf["set_requested"][1:]) == [10, 10]  # capped by max_samples_slow
    assert [str(a["latent_kind"]) for a in (vae, nvp, maf)] == ["vae", "flow", "flow"]
    direct = hfp.spectral_summary(data.test, 17, 0.25)
    np.testing.assert_allclose(vae["hf_power"][vae["image_set"] == 0], direct["hf_power"])
    for arrays in (vae, nvp, maf):
        for key in ("radial", "hf_power", "total_power", "grid"):
            assert np.isfinite(arrays[key]).all(), key
        assert len(arrays["image_set"]) == len(arrays["radial"]) == len(arrays["hf_power"])
    # completions: the model rows keep the observed pixels of the truth, the shown ones included
    assert list(vae["task_name"]) == ["inpaint_centre", "superres_2x"] and len(maf["task_name"]) == 0
    shown = vae["completion_shown"]
    for q in range(2):
        observed = ~vae["task_missing"][q]
        np.testing.assert_allclose(shown[q, 1][:, :, observed], vae["truth_shown"][:, :, observed], atol=1e-4)
        assert ((shown[q] >= 0) & (shown[q] <= 16)).all()
    assert vae["completion_mse"].shape == (2, 2, 4) and str(vae["objective_name"]) == "IWAE-2"
    # every channel of the grid and the shown completions is kept: (G, C, H, W), (Q, 2, E, C, H, W), (E, C, H, W)
    assert vae["grid"].shape == (3 * 3, 1, 8, 8) and shown.shape == (2, 2, 2, 1, 8, 8)
    assert vae["truth_shown"].shape == (2, 1, 8, 8) and maf["completion_shown"].shape == (0, 2, 0, 1, 8, 8)


def test_analysis_tables_agree_with_the_probe_arrays(tiny_results) -> None:
    settings = hfa.check_settings(SETTINGS)
    sets = hfa.image_sets(tiny_results)
    energy = hfa.energy_table(sets, settings)
    assert list(energy["model"]) == ["test data", "maf", "realnvp", "vae"]
    data = tiny_results[0].arrays
    sel = data["image_set"] == 0
    data_fraction = data["hf_power"][sel].sum() / data["total_power"][sel].sum()
    assert energy.loc[0, "hf fraction"] == pytest.approx(data_fraction, abs=1e-4)
    nvp = [r.arrays for r in tiny_results if r.model == "realnvp"]
    per_seed = [a["hf_power"][a["image_set"] == 2].sum() / a["total_power"][a["image_set"] == 2].sum() for a in nvp]
    row = energy[energy["model"] == "realnvp"].iloc[0]
    assert row["hf fraction"] == pytest.approx(np.mean(per_seed), abs=1e-4)
    assert row["hf ratio to data"] == pytest.approx(np.mean(per_seed) / data_fraction, abs=1e-3)
    assert row["hf ci low"] <= row["hf fraction"] <= row["hf ci high"]
    assert row["hf sd over seeds"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-4)
    vae = hfa.vae_table(sets, settings)
    assert len(vae) == 4 and set(vae["model"]) == {"vae"}
    temperature = hfa.temperature_table(sets, settings)
    assert set(temperature["temperature"]) == {0.5, 1.0} and "vae" not in set(temperature["model"])
    frame = hfa.completion_frame(tiny_results)
    completion = hfa.completion_table(frame)
    assert list(completion["method"][:3]) == ["mean fill", "realnvp", "vae"]
    first = [r.arrays for r in tiny_results if r.model == "vae" and r.seed == 0][0]
    assert completion.loc[0, "psnr (dB)"] == pytest.approx(hfa.psnr(first["completion_mse"][0, 0]), abs=1e-4)
    findings = hfa.vae_findings(energy, vae).splitlines()
    assert len(findings) == 2 and "vae samples" in findings[0] and "decoder means" in findings[1]
    values = hfa.variables(energy, vae, temperature, completion, settings, 0.25)
    yaml.safe_dump(values)  # plain types only
    assert values["tiny"]["data_hf_fraction"] == pytest.approx(data_fraction, rel=1e-2)
    for (dataset, task), group in completion.groupby(["dataset", "task"]):  # models beating the baseline, by hand
        summary = values[dataset]["completion"][task]["summary"]
        base = float(group[group["seeds"] == 0]["psnr (dB)"].iloc[0])
        models = group[group["seeds"] > 0]
        assert summary["models"] == len(models)
        assert summary["above_baseline"] == int((models["psnr (dB)"] > base).sum())
        assert summary["best_model"] == figures.model_label(models.loc[models["psnr (dB)"].idxmax(), "method"])
    for chart in (
        hfa.spectra_chart(sets),
        hfa.vae_spectra_chart(sets),
        hfa.temperature_chart(temperature, energy),
        hfa.samples_chart(tiny_results, "tiny"),
        hfa.completions_chart(tiny_results, "tiny"),
    ):
        assert len(chart.to_dict()["description"].split()) > 15  # alt text that says what it shows
    # the site's colours: the test images in black, every model in its own colour
    colour = hfa.spectra_chart(sets).to_dict()["spec"]["encoding"]["color"]["scale"]
    assert colour["domain"] == ["test data", "vae", "maf", "realnvp"]
    assert colour["range"] == ["black"] + [figures.MODEL_COLOURS[m] for m in ("vae", "maf", "realnvp")]


def test_the_site_shows_the_high_frequency_tables_compactly(tiny_results) -> None:
    settings = hfa.check_settings(SETTINGS)
    sets = hfa.image_sets(tiny_results)
    energy = hfa.energy_table(sets, settings)
    shown = hfa.energy_shown(energy, settings, 0.25)
    table = shown.table.set_index("model")
    assert list(shown.table.columns) == [
        "dataset",
        "model",
        f"HF fraction ({settings['confidence']:.0%} CI)",
        "seed sd",
        "ratio to data",
        "spectral distance",
        "power ratio",
        "images",
    ]  # no sample was non-finite
    row = energy.set_index("model").loc["realnvp"]
    assert table.loc["realnvp", f"HF fraction ({settings['confidence']:.0%} CI)"] == (
        f"{figures.sig(row['hf fraction'])}\u00a0({figures.sig(row['hf ci low'])}\u2060–\u2060"
        f"{figures.sig(row['hf ci high'])})"
    )  # never broken across lines
    assert list(shown.table["model"]) == ["test data", "vae", "maf", "realnvp"]  # the data, then the site's order
    assert table.loc["realnvp", "spectral distance"] == figures.mean_sd(
        row["spectral distance"], row["spectral distance sd"]
    )
    assert table.loc["realnvp", "images"] == f"2 × {int(row['images per seed'])}"
    assert table.loc["test data", "seed sd"] == "–" and table.loc["test data", "ratio to data"] == "1.00"
    assert "above 0.25 cycles/pixel" in shown.notes[0] and shown.notes[1] == "No sample was non-finite."
    vae_shown = hfa.vae_shown(hfa.vae_table(sets, settings), settings)
    vae = vae_shown.table
    assert list(vae["image set"]) == ["samples", "decoder mean", "recon. mean", "recon. sample"]
    assert f"*recon. sample*: {hfa.SET_LABELS['reconstruction_sample']}" in vae_shown.notes[-1]
    assert set(vae["images"]) == {f"2 × {int(n)}" for n in hfa.vae_table(sets, settings)["images per seed"]}
    for each in (
        shown,
        hfa.vae_shown(hfa.vae_table(sets, settings), settings),
        hfa.temperature_shown(hfa.temperature_table(sets, settings), settings),
        hfa.completion_shown(hfa.completion_table(hfa.completion_frame(tiny_results))),
        hfa.cost_shown(hfa.cost_table(tiny_results)),
    ):
        text = " | ".join(each.table.astype(str).to_numpy().ravel())
        assert "nan" not in text and " ± " not in text  # a dash for what does not apply; "mean ± sd" on one line
        numbers = re.findall(r"\d+\.\d+", text)
        assert all(len(n.replace(".", "").lstrip("0")) <= 3 for n in numbers), numbers  # 3 significant figures


# --- the smoke study (run after the workflow rule is wired in) --------------------------------------


@pytest.mark.workflow
def test_smoke_high_frequency_tables_are_sane(smoke_study) -> None:
    tables = smoke_study / "results/tables"
    for stem in hfa.TABLES:
        assert (tables / f"{stem}.csv").is_file() and (tables / f"{stem}.md").is_file(), stem
    for stem in hfa.FIGURES:
        for suffix in (".vl.json", ".svg", ".png"):
            assert (smoke_study / f"results/figures/{stem}{suffix}").is_file(), stem + suffix
    energy = pd.read_csv(tables / "high_frequency_energy.csv")
    assert set(energy["dataset"]) == {"digits", "mnist", "textures"}
    assert (energy.groupby("dataset")["model"].apply(lambda m: "test data" in set(m))).all()
    for column in ("hf fraction", "hf ci low", "hf ci high"):
        assert energy[column].between(0, 1).all(), column
    assert (energy["hf ci low"] <= energy["hf fraction"] + 1e-9).all() and (
        energy["hf fraction"] <= energy["hf ci high"] + 1e-9
    ).all()
    assert (energy["spectral distance"] >= 0).all() and (energy["power ratio to data"] > 0).all()
    # sds are empty with one seed (documented); nothing else is
    assert not energy.drop(columns=["hf sd over seeds", "spectral distance sd"]).isna().any().any()
    vae = pd.read_csv(tables / "high_frequency_vae.csv")
    assert vae["hf fraction"].between(0, 1).all() and len(vae) == 3 * 2 * 4
    temperature = pd.read_csv(tables / "high_frequency_temperature.csv")
    assert temperature["hf fraction"].between(0, 1).all() and temperature["temperature"].gt(0).all()
    completion = pd.read_csv(tables / "high_frequency_completion.csv")
    assert set(completion["task"]) == {"inpaint_centre", "superres_2x"}
    assert np.isfinite(completion["psnr (dB)"]).all() and (completion["psnr (dB)"] > 0).all()
    assert (completion["hf energy ratio"] >= 0).all() and (completion["relative hf error"] >= 0).all()
    variables = yaml.safe_load((smoke_study / "results/variables/high_frequency.yml").read_text())
    assert 0 < variables["high_frequency"]["mnist"]["data_hf_fraction"] < 1


@pytest.mark.workflow
def test_smoke_high_frequency_probes_cover_the_image_runs_only(smoke_study) -> None:
    files = sorted(smoke_study.glob("results/*/*/seed*/probes/high_frequency.npz"))
    assert files and not [f for f in files if "toy2d" in f.parts]
    assert {f.parts[-5] for f in files} == {"digits", "mnist", "textures"}


def test_image_urls_decode_to_the_pixels_with_missing_ones_red() -> None:
    Image = pytest.importorskip("PIL.Image")
    import base64
    import io

    image = np.array([[0.0, 16.0], [8.0, np.nan]])
    url = hfa.image_url(image, levels=17, zoom=3)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    assert decoded.shape == (6, 6, 3)
    np.testing.assert_array_equal(decoded[:3, :3], 0)
    np.testing.assert_array_equal(decoded[:3, 3:], 255)
    np.testing.assert_array_equal(decoded[3:, :3], 128)
    np.testing.assert_array_equal(decoded[4, 4], hfa.MISSING_RGB)
