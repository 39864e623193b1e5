"""The latents probe and analysis: latents against direct model calls, paths in latent space,
linear probes against scikit-learn, principal components against hand-made spectra, and the
smoke study's tables and figures."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brute_force import randomise
from vaeflow.analysis import latents as analysis
from vaeflow.analysis.runs import ProbeResult
from vaeflow.data import PreparedDataset
from vaeflow.models import build_model
from vaeflow.probes import applies
from vaeflow.probes import latents as probe_module
from vaeflow.probes.latents import interpolate, pair_indices

PROBE_SETTINGS = {
    "seed": 3,
    "max_train": 30,
    "max_test": 12,
    "slow_models": ["iaf", "ffjord"],
    "max_train_slow": 10,
    "max_test_slow": 6,
    "batch_size": 1000,
    "interpolation_pairs": 2,
    "interpolation_steps": 5,
    "interpolation": "linear",
    "traversal_dims": 2,
    "traversal_steps": 3,
    "traversal_range": 2.0,
}
NOTEBOOK_SETTINGS = {
    "probe_C": 1.0,
    "probe_max_iter": 500,
    "variance_fraction": 0.95,
    "active_threshold": 0.01,
    "figure_dataset": "tiny",
    "scatter_points": 50,
}
SHAPE = (1, 4, 4)
LEVELS = 4


def tiny_images(seed: int = 0) -> PreparedDataset:
    """Three classes of 4x4 images with 4 levels: a bright row per class plus noise."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 2, (n, *SHAPE))
        x[np.arange(n), 0, y, :] = 3
        return x.astype(np.uint8), y.astype(np.int64)

    (xtr, ytr), (xva, yva), (xte, yte) = split(40), split(10), split(20)
    return PreparedDataset("tiny", LEVELS, xtr, xva, xte, ytr, yva, yte, {}, 0, "test")


def tiny_vectors(seed: int = 0) -> PreparedDataset:
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        return (rng.normal(size=(n, 2)) + 3 * y[:, None]).astype(np.float32), y.astype(np.int64)

    (xtr, ytr), (xva, yva), (xte, yte) = split(40), split(10), split(20)
    return PreparedDataset("tiny2d", None, xtr, xva, xte, ytr, yva, yte, {}, 0, "test")


IMAGE_MODELS = {
    "vae": {"latent_dim": 3, "hidden": 8, "layers": 1},
    "vae_iaf": {"latent_dim": 3, "hidden": 8, "layers": 1, "iaf_steps": 1, "iaf_hidden": 8, "context_dim": 2},
    "realnvp": {"hidden_channels": 4, "res_blocks": 0, "n_scales": 1},
    "glow": {"hidden_channels": 4, "steps": 2, "n_levels": 1},
    "maf": {"blocks": 2, "hidden": 16, "layers": 1},
    "iaf": {"blocks": 2, "hidden": 16, "layers": 1},
    "flowpp": {"hidden_channels": 4, "res_blocks": 0, "components": 2, "steps": 1, "n_scales": 1, "dequant_steps": 1},
    "ffjord": {
        "hidden_channels": 4,
        "layers": 1,
        "solver": "rk4",
        "solver_steps": 2,
        "eval_solver": "rk4",
        "eval_solver_steps": 2,
    },
}


def tiny_model(name: str, data: PreparedDataset, options: dict | None = None):
    model = build_model(name, data.example_shape, data.levels, IMAGE_MODELS[name] if options is None else options)
    return randomise(model, std=0.05, seed=1).eval()


def run(model, data, settings=PROBE_SETTINGS):
    torch.manual_seed(settings["seed"])
    return probe_module.probe(model, data, settings, {})


def as_float(a) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


# --- paths in latent space --------------------------------------------------------------------


def test_linear_interpolation_hits_ends_and_midpoint() -> None:
    a, b = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 2.0, -0.5])
    path = interpolate(a, b, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path[2], torch.tensor([2.0, 0.0, 0.0]))
    torch.testing.assert_close(path[1], torch.tensor([1.5, -1.0, 0.25]))


def test_spherical_interpolation_is_the_great_circle() -> None:
    a, b = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    path = interpolate(a, b, t, "spherical")
    # on the circle of radius 2 in the (e1, e2) plane, at angle t·π/2 from a
    expected = torch.stack([2 * torch.cos(t * math.pi / 2), 2 * torch.sin(t * math.pi / 2), 0 * t], dim=1)
    torch.testing.assert_close(path, expected)
    torch.testing.assert_close(path.norm(dim=1), torch.full((7,), 2.0, dtype=torch.float64))
    # parallel vectors: the linear path
    torch.testing.assert_close(interpolate(a, 3 * a, t, "spherical"), interpolate(a, 3 * a, t, "linear"))
    with pytest.raises(ValueError, match="method"):
        interpolate(a, b, t, "cubic")


def test_pairs_join_different_classes_in_order() -> None:
    labels = np.array([1, 0, 1, 2, 0, 2, 1])
    # classes 0,1,2: firsts are 1, 0, 3; then the second 0 is index 4
    np.testing.assert_array_equal(pair_indices(labels, 2, len(labels)), [[1, 0], [3, 4]])
    np.testing.assert_array_equal(pair_indices(None, 2, 7), [[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="interpolation_pairs"):
        pair_indices(np.array([0, 1, 1, 1]), 2, 4)  # class 0 has one example, pair 2 needs a second


# --- the probe against direct model calls -----------------------------------------------------


def test_vae_latents_are_posterior_means_and_images_their_decoded_means() -> None:
    data = tiny_images()
    model = tiny_model("vae", data)
    out = run(model, data)
    x_train = as_float(data.train[:30])
    with torch.no_grad():
        mean = model.encode(x_train)[0]
    np.testing.assert_allclose(out["train_latents"], mean.numpy(), rtol=1e-6, atol=1e-6)
    assert out["train_latents"].shape == (30, 3) and out["test_latents"].shape == (12, 3)
    np.testing.assert_array_equal(out["train_labels"], data.train_labels[:30])
    np.testing.assert_array_equal(out["train_inputs"], data.train[:30].reshape(30, -1))
    np.testing.assert_allclose(
        out["activity"], np.var(out["test_latents"].astype(np.float64), axis=0, ddof=1), rtol=1e-5
    )
    assert str(out["kind"]) == "vae" and int(out["latent_dim"]) == 3 and int(out["num_dims"]) == 16

    # interpolation ends: the decoder mean of each end's posterior mean, rounded to a level
    pairs = out["interp_index"]
    with torch.no_grad():
        za, zb = model.encode(as_float(data.test[pairs[0]]))[0]
        path = torch.stack([(1 - t) * za + t * zb for t in torch.linspace(0, 1, 5)])
        expected = torch.round(model.decode(path)[0].clamp(0, LEVELS - 1)).reshape(5, *SHAPE)
    np.testing.assert_allclose(out["interp_images"][0], expected.numpy())
    np.testing.assert_array_equal(out["interp_originals"][0], data.test[pairs[0]])
    np.testing.assert_array_equal(out["interp_labels"], data.test_labels[pairs])
    assert all(a != b for a, b in out["interp_labels"])

    # traversals: the most active coordinates of the first pair's first image, set to each value
    dims = out["traversal_dims"]
    np.testing.assert_array_equal(dims, np.argsort(-out["activity"], kind="stable")[:2])
    np.testing.assert_allclose(out["traversal_values"], [-2.0, 0.0, 2.0])
    with torch.no_grad():
        base = model.encode(as_float(data.test[pairs[0, 0] : pairs[0, 0] + 1]))[0][0]
        for row, dim in enumerate(dims):
            for col, value in enumerate(out["traversal_values"]):
                z = base.clone()
                z[dim] = float(value)
                image = torch.round(model.decode(z[None])[0].clamp(0, LEVELS - 1)).reshape(SHAPE)
                np.testing.assert_allclose(out["traversal_images"][row, col], image.numpy())


def test_vae_iaf_latent_is_the_flow_of_the_mean() -> None:
    data = tiny_images()
    model = tiny_model("vae_iaf", data)
    out = run(model, data)
    with torch.no_grad():
        posterior = model.posterior_parameters(as_float(data.train[:30]))
        z_t, _ = model.posterior_sample(posterior, torch.zeros_like(posterior[0]))
    np.testing.assert_allclose(out["train_latents"], z_t.numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(out["train_latents"], posterior[0].numpy(), atol=1e-3)  # the IAF moved it
    assert "traversal_images" in out


@pytest.mark.parametrize("name", ["realnvp", "glow", "maf", "iaf"])
def test_flow_latents_are_the_base_variable_of_dequantised_inputs(name: str) -> None:
    data = tiny_images()
    model = tiny_model(name, data)
    out = run(model, data)
    slow = name in PROBE_SETTINGS["slow_models"]
    n_train, n_test = (10, 6) if slow else (30, 12)
    assert out["train_latents"].shape == (n_train, 16) and out["test_latents"].shape == (n_test, 16)
    generator = torch.Generator().manual_seed(PROBE_SETTINGS["seed"])
    x = as_float(data.train[:n_train])
    y = x + torch.rand(x.shape, generator=generator)  # the probe's first draw: the train batch
    with torch.no_grad():
        z = model.forward_and_logdet(y)[0]
    np.testing.assert_allclose(out["train_latents"], z.numpy(), rtol=1e-5, atol=1e-5)
    # the ends of each interpolation are the test images themselves: f is invertible and
    # floor(x + u) = x for u in [0, 1)
    np.testing.assert_array_equal(out["interp_images"][:, 0], out["interp_originals"][:, 0])
    np.testing.assert_array_equal(out["interp_images"][:, -1], out["interp_originals"][:, 1])
    assert "traversal_images" not in out and str(out["kind"]) == "flow"


def test_flowpp_latent_uses_its_own_dequantiser() -> None:
    data = tiny_images()
    model = tiny_model("flowpp", data)
    out = run(model, data)
    generator = torch.Generator().manual_seed(PROBE_SETTINGS["seed"])
    x = as_float(data.train[:30])
    with torch.no_grad():
        u, _ = model.sample_and_log_q(x, generator)
        z = model.forward_and_logdet(x + u)[0]
    np.testing.assert_allclose(out["train_latents"], z.numpy(), rtol=1e-5, atol=1e-5)
    assert "learned dequantiser" in str(out["latent_source"])
    np.testing.assert_array_equal(out["interp_images"][:, 0], out["interp_originals"][:, 0])


def test_vectors_have_latents_but_no_images() -> None:
    data = tiny_vectors()
    for name, options in (
        ("realnvp", {"coupling_layers": 2, "hidden": 8, "mlp_layers": 1}),
        (
            "ffjord",
            {
                "hidden": 8,
                "layers": 1,
                "solver": "rk4",
                "solver_steps": 2,
                "eval_solver": "rk4",
                "eval_solver_steps": 2,
            },
        ),
    ):
        model = tiny_model(name, data, options)
        out = run(model, data)
        x = torch.from_numpy(data.train[:30])
        with torch.no_grad():
            z = model.transform(x) if name == "ffjord" else model.forward_and_logdet(x)[0]
        np.testing.assert_allclose(out["train_latents"], z.numpy(), rtol=1e-5, atol=1e-5)
        assert int(out["levels"]) == 0 and "interp_images" not in out
        np.testing.assert_array_equal(out["test_inputs"], data.test[:12])


def test_probe_settings_are_checked() -> None:
    data = tiny_images()
    model = tiny_model("vae", data)
    with pytest.raises(ValueError, match="lacks max_train"):
        probe_module.probe(model, data, {k: v for k, v in PROBE_SETTINGS.items() if k != "max_train"}, {})
    with pytest.raises(ValueError, match="interpolation"):
        probe_module.probe(model, data, {**PROBE_SETTINGS, "interpolation": "cubic"}, {})
    with pytest.raises(ValueError, match="slow_models"):
        probe_module.probe(model, data, {**PROBE_SETTINGS, "slow_models": ["nope"]}, {})
    assert applies("latents", "glow", "mnist", True) and applies("latents", "vae", "toy2d", False)
    with pytest.raises(ValueError, match="unknown probe"):
        applies("latent", "glow", "mnist", True)


# --- the analysis's numbers -------------------------------------------------------------------


def test_linear_probe_matches_sklearn_and_known_answers() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 10, 0.1, 1, 1] + [0, 5, 0, 0, 0]
    y = (x[:, 0] + x[:, 2] * 10 + 0.5 * rng.normal(size=200) > 0).astype(int)
    acc, converged = analysis.linear_probe_accuracy(x[:150], y[:150], x[150:], y[150:], C=0.5, max_iter=500)
    scaler = StandardScaler().fit(x[:150])
    reference = LogisticRegression(C=0.5, max_iter=500).fit(scaler.transform(x[:150]), y[:150])
    assert acc == pytest.approx(np.mean(reference.predict(scaler.transform(x[150:])) == y[150:]))
    assert converged
    # well-separated classes: perfect; the same test points with swapped labels: all wrong
    blobs = np.concatenate([rng.normal(-5, 0.5, (50, 2)), rng.normal(5, 0.5, (50, 2))])
    labels = np.repeat([0, 1], 50)
    assert analysis.linear_probe_accuracy(blobs, labels, blobs, labels, 1.0, 200)[0] == 1.0
    assert analysis.linear_probe_accuracy(blobs, labels, blobs, 1 - labels, 1.0, 200)[0] == 0.0
    with pytest.raises(ValueError, match="one class"):
        analysis.linear_probe_accuracy(blobs, np.zeros(100), blobs, labels, 1.0, 200)


def test_principal_components_of_a_known_spectrum() -> None:
    # four points (±3, ±1) rotated into 5-D: variances 9 and 1, i.e. 90% and 10%
    square = np.array([[3, 1], [3, -1], [-3, 1], [-3, -1]], dtype=float)
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))
    x = np.pad(square, ((0, 0), (0, 3))) @ rotation.T + 7.0
    assert analysis.pca_components(x, 0.85) == 1
    assert analysis.pca_components(x, 0.9) == 1  # met exactly
    assert analysis.pca_components(x, 0.95) == 2
    assert analysis.pca_components(x, 1.0) == 2
    assert analysis.pca_components(np.ones((10, 3)), 0.95) == 0
    # random data against the eigenvalues of the covariance
    z = np.random.default_rng(2).normal(size=(300, 8)) * np.arange(1, 9)
    eig = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1]
    for fraction in (0.5, 0.8, 0.95):
        assert analysis.pca_components(z, fraction) == int(np.argmax(np.cumsum(eig) / eig.sum() >= fraction) + 1)


def test_active_units_and_mean_sd() -> None:
    assert analysis.active_units(np.array([0.5, 0.011, 0.01, 0.0, 2.0]), 0.01) == 3
    assert analysis.mean_sd(pd.Series([0.4, 0.6])) == "0.500 ± 0.141"
    assert analysis.mean_sd(pd.Series([0.25])) == "0.250"
    assert analysis.mean_sd(pd.Series([float("nan")] * 2)) == "–"
    with pytest.raises(ValueError, match="NaN"):
        analysis.mean_sd(pd.Series([0.3, float("nan")]))


def test_png_data_url_decodes_to_the_levels() -> None:
    from PIL import Image

    levels = np.array([[0, 1, 2], [3, np.nan, 1.4]])
    url = analysis.png_data_url(levels, top=3)
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("LA"))
    np.testing.assert_array_equal(image[..., 0], [[0, 85, 170], [255, 0, 119]])
    np.testing.assert_array_equal(image[..., 1], [[255, 255, 255], [255, 0, 255]])


def fake_result(
    dataset: str, model: str, seed: int, latents: np.ndarray, labels: np.ndarray, inputs: np.ndarray, **extra
) -> ProbeResult:
    n = len(latents) // 2
    arrays = {
        "kind": np.array("flow"),
        "latent_source": np.array("z"),
        "num_dims": np.array(inputs.shape[1]),
        "latent_dim": np.array(latents.shape[1]),
        "levels": np.array(extra.pop("levels", 0)),
        "labelled": np.array(1),
        "train_latents": latents[:n],
        "test_latents": latents[n:],
        "train_labels": labels[:n],
        "test_labels": labels[n:],
        "train_inputs": inputs[:n],
        "test_inputs": inputs[n:],
        "activity": latents[n:].var(0, ddof=1),
        "seconds": np.array(0.1),
        **extra,
    }
    return ProbeResult(
        dataset, model, seed, "latents", Path(f"{dataset}/{model}/seed{seed}/probes/latents.npz"), arrays
    )


def test_run_table_tables_and_variables() -> None:
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 40)
    inputs = rng.normal(size=(80, 4)) + labels[:, None] * 0.3
    good = np.c_[labels * 4.0 + rng.normal(0, 0.1, 80), rng.normal(size=80)]  # separable: accuracy 1
    noise = rng.normal(size=(80, 2))
    results = [fake_result("d", "a", s, good, labels, inputs) for s in (0, 1)]
    results += [fake_result("d", "b", 0, noise, labels, inputs)]
    runs = analysis.run_table(results, NOTEBOOK_SETTINGS)
    assert list(runs["model"]) == ["a", "a", "b"]
    np.testing.assert_allclose(runs["probe_accuracy"][:2], 1.0)
    expected_noise = analysis.linear_probe_accuracy(noise[:40], labels[:40], noise[40:], labels[40:], 1.0, 500)[0]
    assert runs["probe_accuracy"][2] == pytest.approx(expected_noise)
    pixel = analysis.linear_probe_accuracy(inputs[:40], labels[:40], inputs[40:], labels[40:], 1.0, 500)[0]
    np.testing.assert_allclose(runs["pixel_accuracy"], pixel)
    assert runs["pca_pixels"].iloc[0] == analysis.pca_components(inputs[:40], 0.95)

    probe = analysis.probe_table(
        runs, pd.DataFrame({"dataset": ["d"], "model": ["a"], "seed": [0], "test_bpd": [1.5], "bound": ["exact"]})
    )
    assert probe.loc[0, "probe accuracy (latents)"] == "1.000 ± 0.000"
    assert probe.loc[0, "test bits/dim"] == "1.500 (exact)" and probe.loc[1, "test bits/dim"] == "–"
    dims = analysis.dimensionality_table(runs, 0.95, 0.01)
    assert list(dims.columns[4:7]) == ["active units (Var > 0.01)", "PCs for 95% (latents)", "PCs for 95% (pixels)"]
    # the site's form: the latent as a code the legend spells out, "mean ± sd" on one line to 3 figures
    shown = analysis.probe_shown(probe)
    assert shown.table.loc[0, "probe accuracy (latents)"] == "1.00\u00a0±\u00a00.00"
    assert shown.table.loc[0, "latent"] == "L1" and shown.table.loc[0, "test bits/dim"] == "1.50 (exact)"
    assert shown.notes[1] == f"Latents: *L1*: {runs['latent'].iloc[0]}."
    cells = " | ".join(analysis.dimensionality_shown(dims).table.astype(str).to_numpy().ravel())
    assert "nan" not in cells and " ± " not in cells
    spec = analysis.accuracy_chart(runs).to_dict()
    assert len(spec["description"].split()) > 20 and spec["spec"]["layer"][0]["encoding"]["y"]["sort"] == ["a", "b"]

    values = analysis.variables(runs, NOTEBOOK_SETTINGS)
    assert values["d"]["best_model"] == "a" and values["d"]["best_accuracy"] == 1.0
    assert values["d"]["worst_model"] == "b" and values["d"]["b"]["seeds"] == 1
    assert "probe_accuracy_sd" not in values["d"]["b"] and values["d"]["a"]["probe_accuracy_sd"] == 0.0
    assert values["runs"] == 3 and values["probe_fits_not_converged"] == 0


def test_figure_frames_use_the_lowest_seed_and_every_image() -> None:
    rng = np.random.default_rng(0)
    labels, inputs, z = np.tile([0, 1], 10), rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    images = {
        "levels": 4,
        "interp_images": rng.integers(0, 4, (2, 3, 1, 4, 4)).astype(np.float32),
        "interp_originals": np.zeros((2, 2, 1, 4, 4), np.float32),
        "interp_alphas": np.linspace(0, 1, 3),
        "interp_labels": np.array([[0, 1], [1, 0]]),
    }
    images["interp_images"][0, 1, 0, 0, 0] = np.nan
    results = [fake_result("img", "m", s, z, labels, inputs, **images) for s in (1, 0)]
    frame = analysis.interpolation_frame(results, "img")
    assert len(frame) == 2 * (3 + 2) and set(frame["row"]) == {"m · seed 0"}
    assert frame["nan_pixels"].sum() == 1
    assert list(frame["column"][:5]) == ["x_a", "t=0.00", "t=0.50", "t=1.00", "x_b"]
    spec = analysis.interpolations_chart(frame).to_dict()
    assert len(spec["vconcat"]) == 2 and spec["vconcat"][0]["title"] == "pair 1 (classes 0 → 1)"

    scatter = analysis.scatter_frame([fake_result("toy", "m", 0, z, labels, inputs)], points=7)
    assert list(scatter["panel"].unique()) == ["data", "m · seed 0"] and len(scatter) == 14
    np.testing.assert_allclose(scatter[scatter["panel"] == "data"][["z1", "z2"]], inputs[10:17])
    assert analysis.scatter_chart(scatter.iloc[:0]).to_dict()["mark"]["type"] == "text"
    for chart in (
        analysis.interpolations_chart(frame),
        analysis.scatter_chart(scatter),
        analysis.scatter_chart(scatter.iloc[:0]),
    ):
        assert chart.to_dict()["description"]  # alt text


def test_notebook_parameters_and_outputs(root: Path) -> None:
    nb = json.loads((root / "workflow/notebooks/latents.ipynb").read_text())
    parameters = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(parameters) == 1
    names = re.findall(r"^(\w+) =", "".join(parameters[0]["source"]), flags=re.M)
    assert names == ["metrics", "probes", "settings", "tables_dir", "figures_dir", "variables_out"]
    source = "\n".join("".join(c["source"]) for c in nb["cells"])
    for stem in [*analysis.TABLES, *analysis.FIGURES]:
        assert f'/{stem}"' in source, f"the notebook never writes {stem}"
        assert f"#| label: {'tbl' if stem in analysis.TABLES else 'fig'}-{stem.replace('_', '-')}" in source


# --- the smoke study --------------------------------------------------------------------------

NUMBER = re.compile(r"^(-?\d+\.\d+)(?: ± (\d+\.\d+))?$")


def parse(cell: str) -> float:
    match = NUMBER.match(str(cell))
    assert match, f"not a 'mean ± sd' cell: {cell!r}"
    return float(match.group(1))


@pytest.mark.workflow
def test_smoke_probe_files(smoke_study: Path) -> None:
    files = sorted(smoke_study.glob("results/*/*/seed*/probes/latents.npz"))
    assert files, "the smoke study wrote no latents probe files"
    for path in files:
        with np.load(path) as a:
            for key in ("train_latents", "test_latents", "activity"):
                assert np.isfinite(a[key]).all(), f"{path}: {key} not finite"
            assert a["train_latents"].shape[1] == int(a["latent_dim"]) <= int(a["num_dims"])
            assert len(a["train_labels"]) == len(a["train_latents"]) == len(a["train_inputs"])


@pytest.mark.workflow
def test_smoke_tables(smoke_study: Path) -> None:
    probe = pd.read_csv(smoke_study / "results/tables/latents_probe.csv")
    runs = {p.parts[-5:-3] for p in smoke_study.glob("results/*/*/seed*/probes/latents.npz")}
    assert set(zip(probe["dataset"], probe["model"])) == runs
    for column in ("probe accuracy (latents)", "probe accuracy (pixels)"):
        values = probe[column].map(parse)
        assert ((values >= 0) & (values <= 1)).all(), column
    diff = probe["latents − pixels"].map(parse)
    assert ((diff >= -1) & (diff <= 1)).all()
    assert (probe["model"].isin(["vae", "vae_iaf"]) | (probe["latent dims"] > 0)).all()

    dims = pd.read_csv(smoke_study / "results/tables/latents_dimensionality.csv")
    assert len(dims) == len(probe)
    flows = ~dims["model"].isin(["vae", "vae_iaf"])
    assert (dims.loc[flows, "latent dims"] == dims.loc[flows, "D"]).all()
    assert (dims["latent dims"] <= dims["D"]).all()
    active = dims.filter(like="active units").iloc[:, 0].map(parse)
    pcs = dims.filter(like="(latents)").iloc[:, 0].map(parse)
    pixels = dims.filter(like="(pixels)").iloc[:, 0].map(parse)
    assert ((active >= 0) & (active <= dims["latent dims"])).all()
    assert ((pcs >= 1) & (pcs <= dims["latent dims"])).all()
    assert ((pixels >= 1) & (pixels <= dims["D"])).all()


@pytest.mark.workflow
def test_smoke_figures_and_variables(smoke_study: Path) -> None:
    import yaml

    for stem in analysis.FIGURES:
        for suffix in (".vl.json", ".svg", ".png"):
            path = smoke_study / f"results/figures/{stem}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, path
    values = yaml.safe_load((smoke_study / "results/variables/latents.yml").read_text())["latents"]
    assert values["runs"] == len(list(smoke_study.glob("results/*/*/seed*/probes/latents.npz")))
    for dataset in ("digits", "mnist", "textures", "toy2d"):
        assert 0 <= values[dataset]["pixel_accuracy"] <= 1
        assert 0 <= values[dataset]["best_accuracy"] <= 1
