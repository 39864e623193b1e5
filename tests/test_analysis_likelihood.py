"""The likelihood probe and analysis: IWAE-k curves against brute force, tables on the smoke study."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from vaeflow.analysis import figures, likelihood
from vaeflow.data.store import PreparedDataset
from vaeflow.models.vae import VAE
from vaeflow.probes import applies
from vaeflow.probes import likelihood as probe_module
from vaeflow.probes.likelihood import group_bounds

F64 = torch.float64


def test_group_bounds_equal_the_brute_force_average_over_groups() -> None:
    log_w = torch.randn(12, 3, dtype=F64, generator=torch.Generator().manual_seed(0)) * 2
    got = group_bounds(log_w, [1, 3, 5, 12])
    for row, k in zip(got, [1, 3, 5, 12]):
        groups = 12 // k
        expected = [
            sum(
                math.log(sum(math.exp(log_w[g * k + i, n].item()) for i in range(k))) - math.log(k)
                for g in range(groups)
            )
            / groups
            for n in range(3)
        ]
        torch.testing.assert_close(row, torch.tensor(expected, dtype=F64))
    assert torch.allclose(got[0], log_w.mean(0))  # k = 1 is the ELBO estimate


def test_group_bounds_refuse_k_beyond_the_draws() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        group_bounds(torch.zeros(4, 2), [8])


def test_probe_curve_rises_with_k_and_stays_below_the_grid_marginal() -> None:
    torch.manual_seed(3)
    model = VAE((2,), None, latent_dim=1, hidden=16, layers=1).to(F64).eval()
    x = torch.tensor([[0.3, -1.2], [1.5, 0.8], [-0.4, 0.1]], dtype=F64)
    data = PreparedDataset(
        name="toy",
        train=x.numpy(),
        val=x.numpy(),
        test=x.numpy(),
        levels=None,
        train_labels=None,
        val_labels=None,
        test_labels=None,
        options={},
        seed=0,
        source="test",
    )
    out = probe_module.probe(model, data, {"seed": 0, "iwae_ks": [1, 10, 100, 5000], "iwae_examples": 3}, {})
    assert list(out["k"]) == [1, 10, 100, 5000] and out["iwae_nats"].shape == (4, 3)
    curve = out["iwae_nats"]
    assert (np.diff(curve, axis=0) > -1e-3).all()  # group averages: non-decreasing in k here
    z = torch.linspace(-12, 12, 24001, dtype=F64).view(-1, 1)
    with torch.no_grad():
        joint = (
            model.log_likelihood(x[:, None, :], z[None]) - 0.5 * z.square().sum(-1)[None] - 0.5 * math.log(2 * math.pi)
        )
    log_px = (torch.logsumexp(joint, 1) + math.log(24 / 24000)).numpy()
    assert (curve[-1] <= log_px + 0.02).all() and (np.abs(curve[-1] - log_px) < 0.05).all()
    assert (curve[0] < log_px).all() and (log_px - curve[0]).max() > 0.05  # a real gap for k to close


def test_probe_covers_exactly_the_bound_models() -> None:
    assert applies("likelihood", "vae", "toy2d", image=False) and applies("likelihood", "vae_iaf", "digits", image=True)
    assert applies("likelihood", "flowpp", "mnist", image=True) and not applies(
        "likelihood", "flowpp", "toy2d", image=False
    )
    assert not any(applies("likelihood", m, "mnist", image=True) for m in ("realnvp", "glow", "maf", "iaf", "ffjord"))


def test_per_class_table_names_the_easiest_and_hardest_class() -> None:
    classes = pd.DataFrame(
        {
            "dataset": "digits",
            "model": "vae",
            "seed": [0, 0, 1, 1],
            "class": [0, 1, 0, 1],
            "bits_per_dim": [1.0, 2.0, 1.2, 2.2],
        }
    )
    table = likelihood.per_class_table(classes)
    assert table.loc[0, "class 0"] == pytest.approx(1.1) and table.loc[0, "class 1"] == pytest.approx(2.1)
    assert table.loc[0, "easiest"] == 0 and table.loc[0, "hardest"] == 1


def test_curve_variables_known_answers() -> None:
    nan = float("nan")
    rows = [
        ("d", "vae", 0, 1, 3.0, False),
        ("d", "vae", 0, 10, 2.8, False),
        ("d", "vae", 1, 1, 3.2, False),
        ("d", "vae", 1, 10, 2.6, False),
        ("d", "realnvp", 0, nan, 2.5, True),
        ("d", "realnvp", 1, nan, 2.7, True),
        ("d", "iaf", 0, nan, float("inf"), True),
        ("d", "glow", 0, nan, 2.9, True),
    ]
    curves = pd.DataFrame(rows, columns=["dataset", "model", "seed", "k", "bits_per_dim", "exact"])
    values = likelihood.curve_variables(curves, pd.DataFrame())["iwae"]["d"]
    assert values["vae"]["elbo_bpd"] == 3.1 and values["vae"]["iwae_max_bpd"] == 2.7
    assert values["vae"]["tightening_bpd"] == pytest.approx(0.4) and values["vae"]["non_increasing"]
    # best exact model on the same examples: realnvp (mean 2.6; the non-finite iaf is never "best")
    assert (values["best_exact_model"], values["best_exact_bpd"]) == ("Real NVP", 2.6)
    assert values["vae"]["vs_best_exact_bpd"] == pytest.approx(0.1)  # the bound still lies above the flow


def test_variables_count_and_name_the_runs_that_did_not_converge() -> None:
    runs = pd.DataFrame(
        {
            "dataset": "d",
            "model": ["vae", "vae", "maf"],
            "seed": [0, 1, 0],
            "test_bpd": [2.0, 2.2, 3.0],
            "bound": ["iwae-10", "iwae-10", "exact"],
            "steps": [1500, 750, 50],
            "best_step": [1500, 500, 50],
            "converged": [False, True, True],
        }
    )
    values = likelihood.variables(runs)
    assert values["runs"] == 3 and values["seeds"] == 2
    convergence = values["convergence"]
    assert (convergence["converged"], convergence["not_converged"]) == (2, 1)
    assert convergence["summary"] == (
        "1 of 3 runs did not converge, stopped by the step ceiling while their validation bits/dim was still "
        "improving: vae on d, seed 0, after 1,500 steps. Every comparison that involves it is provisional. The other 2 "
        "were stopped by early stopping."
    )
    assert values["d"]["vae"] == {"test_bpd": "2.100 ± 0.141", "bound": "iwae-10"}
    every = likelihood.convergence_variables(runs.assign(converged=True))["convergence"]
    assert every["summary"].startswith("All 3 runs converged") and every["not_converged"] == 0


def test_tables_mark_the_runs_the_step_ceiling_stopped(study_baselines) -> None:
    runs = _runs(
        [
            ("mnist", "vae", 0, 2.0, False, "its ELBO", 50),
            ("mnist", "vae", 1, 2.1, False, "its ELBO", 100),
            ("mnist", "maf", 0, 2.5, True, "maximum likelihood", 100),
            ("toy2d", "maf", 0, 2.4, True, "maximum likelihood", 50),
        ]
    )
    runs = runs.assign(converged=[True, False, False, True], steps=[75, 100, 100, 60])
    table = likelihood.likelihood_table(runs, study_baselines).set_index(["dataset", "model"])
    assert table.loc[("mnist", "vae"), "converged"] == "1 of 2 (seed 1 at the 100-step ceiling)"
    assert table.loc[("mnist", "maf"), "converged"] == "no (seed 0 at the 100-step ceiling)"
    assert table.loc[("toy2d", "maf"), "converged"] == "yes"
    assert table.loc[("mnist", "uniform (baseline)"), "converged"] == "–"
    models = likelihood.models_table(runs).set_index(["model", "dataset"])
    assert models.loc[("vae", "mnist"), "steps"] == "75–100" and models.loc[("vae", "mnist"), "step ceiling"] == "100"
    assert models.loc[("maf", "toy2d"), ["steps", "converged"]].tolist() == ["60", "yes"]
    shown = likelihood.models_shown(likelihood.models_table(runs))
    rows = shown.table.set_index(["model", "dataset"])
    assert list(rows.index) == [("vae", "mnist"), ("maf", "mnist"), ("maf", "toy2d")]  # the VAEs first
    assert rows.loc[("vae", "mnist"), ["trained by", "steps / ceiling", "converged"]].tolist() == [
        "ELBO",
        "75–100 / 100",
        "1 of 2",
    ]  # the CSV names the seed the ceiling stopped
    assert rows.loc[("maf", "mnist"), ["trained by", "converged"]].tolist() == ["ML", "no"]
    assert "non-finite" not in rows.columns and "No sample was non-finite." in shown.notes
    assert any("*ML*: maximum likelihood" in note for note in shown.notes)


def _baselines_json(
    tmp_path, dataset: str, levels, entries: list[tuple[str, bool, dict]], num_dims: int = 4, scores: dict | None = None
):
    """A results/<dataset>/baselines.json as rule baselines writes it (the fields the analysis reads)."""
    folder = tmp_path / dataset
    folder.mkdir(parents=True, exist_ok=True)
    if scores is not None:
        np.savez(folder / "baselines_test_scores.npz", **scores)
    found = {
        "dataset": dataset,
        "levels": levels,
        "num_dims": num_dims,
        "test_scores": "baselines_test_scores.npz",
        "baselines": [
            {
                "name": name,
                "label": name.replace("_", " "),
                "quantity": "exact discrete likelihood",
                "description": name,
                "parameters": 3,
                "reference": reference,
                "bits_per_dim": bpd,
            }
            for name, reference, bpd in entries
        ],
    }
    path = folder / "baselines.json"
    path.write_text(json.dumps(found))
    return path


def _split(test, val=None, train=None):
    return {"train": test if train is None else train, "val": test if val is None else val, "test": test}


def _runs(rows) -> pd.DataFrame:
    """Runs as load_runs makes them, from (dataset, model, seed, test_bpd, exact, trained_by, best_step); a run
    whose best step is its ceiling (100) did not converge."""
    frame = pd.DataFrame(rows, columns=["dataset", "model", "seed", "test_bpd", "exact", "trained_by", "best_step"])
    return frame.assign(
        bound=np.where(frame["exact"], "exact", "iwae-10"),
        test_elbo_bpd=np.nan,
        val_bpd=1.0,
        train_bpd=1.0,
        parameters=10,
        steps=frame["best_step"].clip(lower=75),
        ceiling=100,
        converged=frame["best_step"] < 100,
        stopped_by=np.where(frame["best_step"] < 100, "patience", "ceiling"),
        samples_per_s=1.0,
        density_evals_per_s=1.0,
        nonfinite_samples=0,
    )


@pytest.fixture
def study_baselines(tmp_path) -> pd.DataFrame:
    images = _baselines_json(
        tmp_path, "mnist", 256, [("uniform", False, _split(8.0)), ("independent_pixels", True, _split(3.0, 2.9, 2.8))]
    )
    toy = _baselines_json(tmp_path, "toy2d", None, [("gaussian", True, _split(2.5))], num_dims=2)
    return likelihood.load_baselines([images, toy])


def test_margins_and_table_rows_against_hand_computed_values(study_baselines) -> None:
    runs = _runs(
        [
            ("mnist", "realnvp", 0, 3.2, True, "maximum likelihood", 100),
            ("mnist", "realnvp", 1, 3.0, True, "maximum likelihood", 50),
            ("mnist", "vae", 0, 2.0, False, "its ELBO", 50),
            ("toy2d", "maf", 0, 2.4, True, "maximum likelihood", 50),
        ]
    )
    margins = likelihood.baseline_margins(runs, study_baselines).set_index(["dataset", "model"])
    assert margins.loc[("mnist", "realnvp"), "margin"] == pytest.approx(3.1 - 3.0)  # mean over seeds - reference
    assert margins.loc[("mnist", "vae"), "margin"] == pytest.approx(-1.0)
    assert margins.loc[("toy2d", "maf"), "margin"] == pytest.approx(-0.1)  # against the Gaussian
    assert list(margins["beats"]) == [False, True, True]
    assert margins.loc[("mnist", "realnvp"), "baseline"] == "independent pixels"

    table = likelihood.likelihood_table(runs, study_baselines).set_index(["dataset", "model"])
    assert table.loc[("mnist", "realnvp"), "margin vs baseline (bits/dim)"] == "+0.100"
    assert table.loc[("mnist", "realnvp"), "beats baseline"] == "no"
    assert table.loc[("mnist", "vae"), "margin vs baseline (bits/dim)"] == "-1.000"
    assert table.loc[("mnist", "vae"), "beats baseline"] == "yes"
    # the baselines are rows, marked, with their quantity; the reference one says so
    assert table.loc[("mnist", "independent pixels (baseline)"), "test bits/dim"] == "3.000"
    assert table.loc[("mnist", "independent pixels (baseline)"), "beats baseline"] == "reference"
    assert table.loc[("mnist", "uniform (baseline)"), "beats baseline"] == "–"
    assert table.loc[("mnist", "uniform (baseline)"), "test quantity"] == "exact discrete likelihood"
    assert table.loc[("toy2d", "gaussian (baseline)"), "test bits/dim"] == "2.500"
    assert len(table) == 3 + 3  # three (dataset, model) pairs, three baselines


def test_findings_explain_only_the_causes_that_apply(study_baselines) -> None:
    every = _runs(
        [("mnist", "vae", 0, 2.0, False, "its ELBO", 50), ("toy2d", "maf", 0, 2.4, True, "maximum likelihood", 50)]
    )
    found = likelihood.baseline_findings(likelihood.baseline_margins(every, study_baselines))
    assert found["summary"].startswith("Every model beat") and "maf on toy2d, at -0.100" in found["summary"]

    runs = _runs(
        [
            ("mnist", "realnvp", 0, 3.2, True, "maximum likelihood", 50),
            ("mnist", "iaf", 0, 9.0, True, "density distillation from maf", 100),
            ("mnist", "vae", 0, 2.0, False, "its ELBO", 50),
            ("toy2d", "maf", 0, 2.6, True, "maximum likelihood", 50),
        ]
    )
    margins = likelihood.baseline_margins(runs, study_baselines)
    found = likelihood.baseline_findings(margins)
    assert found["summary"].startswith("3 of 4 model-dataset pairs did not beat")
    assert "on mnist, 2 of 3 (iaf +6.000, realnvp +0.200 bits/dim against independent pixels)" in found["summary"]
    assert "on toy2d, 1 of 1 (maf +0.100 bits/dim against gaussian)" in found["summary"]
    assert "vae" not in found["summary"]
    why = found["explanation"]
    assert likelihood.WHY_NOT["dequantised"] + " (here: iaf, realnvp on mnist)." in why
    assert likelihood.WHY_NOT["distilled"] + " (here: iaf on mnist)." in why
    assert likelihood.WHY_NOT["continuous"] + " (here: maf on toy2d)." in why
    assert likelihood.WHY_NOT["ceiling"] + " (here: iaf on mnist)." in why
    assert likelihood.WHY_NOT["bound"] not in why  # the one bound model beat its baseline

    values = likelihood.baseline_variables(margins, study_baselines)["baselines"]
    assert values["models_compared"] == 4 and values["models_not_beating"] == 3
    assert (
        values["mnist"]["independent_pixels"]["val_bpd"] == "2.900"
        and values["mnist"]["reference"] == "independent pixels"
    )
    assert values["mnist"]["uniform"]["test_bpd"] == "8.000"
    assert values["mnist"]["not_beating"] == "iaf, realnvp" and values["toy2d"]["not_beating"] == "maf"
    assert values["mnist"]["margins"]["vae"] == {"margin_bpd": "-1.000", "beats": True}
    assert values["summary"] == found["summary"] and values["explanation"] == why


def test_findings_quote_the_measured_evidence_of_each_model_that_loses(study_baselines) -> None:
    """A losing flow is described by its own numbers: training against validation (it underfits), what its
    importance-weighted bound recovers of its single-draw one, and which flow scored the same way does beat
    the baseline (3.0 bits/dim here)."""
    runs = _runs(
        [
            ("mnist", "maf", 0, 3.2, True, "maximum likelihood", 50),
            ("mnist", "maf", 1, 3.1, True, "maximum likelihood", 50),
            ("mnist", "glow", 0, 2.5, True, "maximum likelihood", 50),
            ("mnist", "vae", 0, 3.6, False, "its ELBO", 50),
        ]
    )
    runs = runs.assign(
        bound=np.where(runs["exact"], "iw-uniform-100", "iwae-10"),
        train_bpd=[3.30, 3.34, 2.6, 3.0],  # the VAE: validation 0.5 above training
        val_bpd=[3.33, 3.37, 2.7, 3.5],
        test_elbo_bpd=[3.40, 3.30, 2.6, 3.7],
    )
    why = likelihood.baseline_findings(likelihood.baseline_margins(runs, study_baselines))["explanation"]
    measured = why.split(" Measured in this build: ")[1]
    assert measured.startswith(
        "maf on mnist: training 3.320 and validation 3.350 bits/dim, it underfits (validation within +0.030 of "
        "training); its iw-uniform-100 lies 0.200 below its single-draw bound; glow, scored the same way at the "
        "same budget, beats the baseline, so that accounting alone does not explain it; "
    )
    # the VAE overfits, and no other bound model of the dataset beats the baseline
    assert measured.endswith(
        "vae on mnist: training 3.000 and validation 3.500 bits/dim, it overfits (validation +0.500 above "
        "training); its iwae-10 lies 0.100 below its single-draw bound."
    )


def test_missing_or_ambiguous_baselines_are_named(tmp_path, study_baselines) -> None:
    runs = _runs([("digits", "vae", 0, 2.0, False, "its ELBO", 50)])
    with pytest.raises(ValueError, match="no baselines for dataset.*digits.*snakemake results/digits/baselines.json"):
        likelihood.baseline_margins(runs, study_baselines)
    two = _baselines_json(
        tmp_path / "two", "digits", 17, [("uniform", True, _split(4.0)), ("independent_pixels", True, _split(2.0))]
    )
    with pytest.raises(ValueError, match="baselines of digits: each dataset needs exactly one reference"):
        likelihood.load_baselines([two])
    with pytest.raises(ValueError, match="no baselines given"):
        likelihood.load_baselines([])


def test_reference_baseline_on_the_probes_examples(tmp_path) -> None:
    from vaeflow.analysis.runs import ProbeResult

    nats = np.array([-4.0, -8.0, -100.0])  # the probe scored the first two test examples only
    path = _baselines_json(
        tmp_path,
        "digits",
        17,
        [("uniform", False, _split(4.0)), ("independent_pixels", True, _split(2.0))],
        num_dims=4,
        scores={"uniform": np.full(3, -4 * math.log(17)), "independent_pixels": nats},
    )
    baselines = likelihood.load_baselines([path])
    probe = ProbeResult("digits", "vae", 0, "likelihood", tmp_path, {"k": np.array([1]), "iwae_nats": np.zeros((1, 2))})
    references = likelihood.baselines_on_examples(baselines, [probe])
    assert references.to_dict("records") == [
        {"dataset": "digits", "label": "independent pixels", "bits_per_dim": pytest.approx(6.0 / (4 * math.log(2)))}
    ]


def _layers(spec: dict) -> list[dict]:
    """Every layer of every panel of a concatenated chart's spec."""
    return [layer for panel in spec["concat"] for layer in panel["layer"]]


def _rows(spec: dict, layer: dict) -> list[dict]:
    return spec["datasets"][layer["data"]["name"]]


def test_figures_draw_every_baseline_as_a_labelled_rule(study_baselines) -> None:
    curves = pd.DataFrame(
        {
            "step": [0, 10, 0, 10],
            "split": ["train", "train", "val", "val"],
            "bits_per_dim": [9.0, 4.0, 9.1, 4.2],
            "dataset": "mnist",
            "model": "vae",
            "seed": 0,
        }
    )
    spec = likelihood.learning_curves_chart(curves, study_baselines).to_dict()
    layers = _layers(spec)
    assert [layer["mark"]["type"] for layer in layers] == ["line", "rule", "text"]
    drawn = {(r["label"], r["bits_per_dim"]) for r in _rows(spec, layers[1])}
    assert drawn == {("uniform (baseline)", 8.0), ("independent pixels (baseline)", 2.9)}  # validation bits/dim
    assert layers[1]["mark"]["color"] == "gray" and layers[2]["encoding"]["text"]["field"] == "label"
    assert layers[0]["encoding"]["color"]["scale"] == {"domain": ["vae"], "range": [figures.MODEL_COLOURS["vae"]]}
    assert "one colour per model" in spec["description"] and "no run is off the scale" in spec["description"]


def test_learning_curves_name_the_run_that_would_flatten_the_others(study_baselines) -> None:
    """A run at 3×10^5 bits/dim neither sets the axis nor disappears: it is named in the panel's subtitle."""
    rows = [("vae", 0, 5.0, 3.0), ("vae", 1, 5.2, 3.1), ("maf", 0, 9.0, 3.5), ("glow", 0, 4e5, 3e5)]
    curves = pd.DataFrame(
        [
            {"dataset": "mnist", "model": m, "seed": s, "split": split, "step": step, "bits_per_dim": v}
            for m, s, first, last in rows
            for split in ("train", "val")
            for step, v in ((0, first), (100, last))
        ]
    )
    scale = likelihood.learning_curve_scale(curves, study_baselines)["mnist"]
    # typical range: from the lowest best (2.9, independent pixels' validation bits/dim) to 8.0 (uniform)
    assert scale["ceiling"] == pytest.approx(8.0 + 3 * (8.0 - 2.9))
    assert scale["off_scale"] == [("glow seed 0", 3e5)] and scale["below"] == []
    # the axis: up to the highest baseline or best (8.0); maf's first evaluation at 9.0 leaves it at the top
    low, high = scale["domain"]
    assert low == pytest.approx(2.9 - 0.03 * (8.0 - 2.9)) and high == pytest.approx(8.0 + 0.03 * (8.0 - 2.9))
    spec = likelihood.learning_curves_chart(curves, study_baselines).to_dict()
    panel = spec["concat"][0]
    assert panel["title"]["subtitle"] == ["off scale (above 23.3 bits/dim): glow seed 0 at 300,000"]
    assert panel["layer"][0]["encoding"]["y"]["scale"]["domain"] == [low, high] and panel["layer"][0]["mark"]["clip"]
    assert "off the scale: glow seed 0 on mnist" in spec["description"]


def test_a_distilled_students_training_loss_is_below_the_scale_and_named(study_baselines) -> None:
    curves = pd.DataFrame(
        {
            "dataset": "mnist",
            "model": ["iaf"] * 4 + ["vae"] * 2,
            "seed": 0,
            "split": ["train", "train", "val", "val", "val", "val"],
            "step": [0, 10, 0, 10, 0, 10],
            "bits_per_dim": [0.5, -40.0, 6.0, 5.0, 4.0, 3.0],
        }
    )
    scale = likelihood.learning_curve_scale(curves, study_baselines)["mnist"]
    assert scale["floor"] == pytest.approx(2.9 - 3 * (8.0 - 2.9)) and scale["below"] == [("iaf seed 0", -40.0)]
    assert scale["domain"][0] == pytest.approx(0.5 - 0.03 * (8.0 - 0.5))  # 0.5 is within the floor: drawn


def test_likelihood_table_for_readers_pivots_models_against_datasets(study_baselines) -> None:
    runs = _runs(
        [
            ("mnist", "realnvp", 0, 3.2, True, "maximum likelihood", 100),
            ("mnist", "realnvp", 1, 3.0, True, "maximum likelihood", 50),
            ("mnist", "vae", 0, 2.0, False, "its ELBO", 50),
            ("mnist", "vae", 1, 2.2, False, "its ELBO", 50),
            ("toy2d", "maf", 0, 2.4, True, "maximum likelihood", 50),
            ("toy2d", "realnvp", 0, 2.45, True, "maximum likelihood", 50),
        ]
    )
    runs.loc[runs["exact"] & (runs["dataset"] == "mnist"), "bound"] = "exact density of uniformly dequantised data"
    shown = likelihood.likelihood_shown(runs, study_baselines)
    table = shown.table.set_index("model")
    pm = "\u00a0±\u00a0"
    assert list(shown.table.columns) == ["model", "quantity", "mnist", "toy2d"]
    assert list(table.index) == [
        "vae",
        "maf",
        "realnvp",
        "uniform (baseline)",
        "independent pixels (baseline)",
        "gaussian (baseline)",
    ]  # the VAEs first, then the flows (by the year of their paper), then the baselines
    # mean ± sd over seeds on one line; bold: the lowest model; †: above the reference; ‡: a seed at its ceiling
    assert table.loc["vae", "mnist"] == f"**2.10{pm}0.14**"
    assert table.loc["realnvp", "mnist"] == f"3.10{pm}0.14^†‡^"  # 3.1 > 3.0 (independent pixels); seed 0 at 100
    assert table.loc["maf", "mnist"] == "–" and table.loc["maf", "toy2d"] == "**2.40**"
    assert table.loc["uniform (baseline)", "mnist"] == "8.00" and table.loc["uniform (baseline)", "toy2d"] == "–"
    assert table.loc["gaussian (baseline)", "toy2d"] == "2.50"
    assert table.loc["realnvp", "quantity"] == "deq" and table.loc["vae", "quantity"] == "iwae-10"
    assert table.loc["independent pixels (baseline)", "quantity"] == "discrete"
    notes = " ".join(shown.notes)
    assert "mean ± sd over 2 to 1 seeds" not in notes and "mean ± sd over 1 to 2 seeds" in notes
    assert "^†^ did not beat the dataset's reference baseline (independent pixels on mnist; gaussian on toy2d)" in notes
    assert "^‡^ a seed stopped at its step ceiling" in notes
    assert "*deq*: exact density of uniformly dequantised data" in notes and "*discrete*: exact discrete" in notes
    assert "On toy2d the quantity is *exact* for realnvp." in notes  # the row's code is mnist's, deq
    assert "On toy2d the quantity is *exact density* for gaussian (baseline)." not in notes  # its only dataset
    markdown = figures.table_markdown(shown, "results/tables/likelihood.csv")
    assert "nan" not in markdown and "(results/tables/likelihood.csv)" in markdown


def test_the_headline_figure_shows_every_seed_and_marks_the_off_scale_one(study_baselines) -> None:
    runs = _runs(
        [
            ("mnist", "vae", 0, 2.0, False, "its ELBO", 50),
            ("mnist", "vae", 1, 2.2, False, "its ELBO", 50),
            ("mnist", "glow", 0, 2.6, True, "maximum likelihood", 50),
            ("mnist", "glow", 1, 3e5, True, "maximum likelihood", 50),
            ("toy2d", "maf", 0, 2.4, True, "maximum likelihood", 50),
        ]
    )
    seeds, models, scale = likelihood.overview_frame(runs, study_baselines)
    assert list(scale) == ["mnist"]  # the image datasets only: toy2d's numbers are differential entropies
    assert scale["mnist"]["ceiling"] == pytest.approx(8.0 + 3 * (8.0 - 2.0))
    off = seeds[seeds["off"]]
    assert off[["model", "seed", "label"]].values.tolist() == [["glow", 1, "300,000"]]
    low, high = scale["mnist"]["domain"]
    assert low < 2.0 and 8.0 < off["shown"].iloc[0] < high < 9  # drawn inside the panel, at its right edge
    vae = models.set_index("model").loc["vae"]
    assert (vae["test_bpd"], vae["low"], vae["high"], vae["likelihood"]) == (pytest.approx(2.1), 2.0, 2.2, "bound")
    assert bool(models.set_index("model").loc["glow", "off"])  # its mean is off scale too
    spec = likelihood.overview_chart(runs, study_baselines).to_dict()
    panel = spec["concat"][0]
    assert panel["title"]["text"] == "mnist" and "glow seed 1 at 300,000" in panel["title"]["subtitle"][0]
    rules = [layer for layer in panel["layer"] if layer["mark"]["type"] == "rule" and "color" in layer["mark"]]
    assert {r["bits_per_dim"] for r in _rows(spec, rules[0])} == {8.0, 3.0}  # both baselines at their test bits/dim
    colours = [layer["encoding"]["color"]["scale"] for layer in panel["layer"] if "color" in layer.get("encoding", {})]
    assert all(
        c == {"domain": ["vae", "glow"], "range": [figures.MODEL_COLOURS["vae"], figures.MODEL_COLOURS["glow"]]}
        for c in colours
    )
    assert "Lowest mean per dataset: mnist: vae at 2.10" in spec["description"]
    assert "glow seed 1 on mnist" in spec["description"]


def test_the_iwae_figure_keeps_its_axis_when_one_model_degenerates() -> None:
    curves = pd.DataFrame(
        [
            ("d", "vae", 0, 1, 3.0, False),
            ("d", "vae", 0, 10, 2.8, False),
            ("d", "vae_iaf", 0, 1, 3e5, False),
            ("d", "vae_iaf", 0, 10, 2e5, False),
            ("d", "realnvp", 0, float("nan"), 2.5, True),
        ],
        columns=["dataset", "model", "seed", "k", "bits_per_dim", "exact"],
    )
    references = pd.DataFrame({"dataset": ["d"], "label": ["independent pixels"], "bits_per_dim": [2.4]})
    spec = likelihood.iwae_chart(curves, references).to_dict()
    panel = spec["concat"][0]
    low, high = panel["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert high < 4 and low < 2.4  # set by vae, realnvp and the baseline, not by vae_iaf
    assert "vae_iaf at 300,000" in panel["title"]["subtitle"][0] and "vae_iaf on d" in spec["description"]


def test_per_class_figure_draws_the_baselines_per_class(tmp_path) -> None:
    labels = np.array([0, 0, 1, 1])
    np.savez(tmp_path / "run.npz", labels=labels, log_likelihood=np.zeros(4))
    path = _baselines_json(
        tmp_path,
        "digits",
        17,
        [("uniform", False, _split(4.0)), ("independent_pixels", True, _split(2.0))],
        num_dims=4,
        scores={
            "uniform": np.full(4, -4 * 4 * math.log(2)),
            "independent_pixels": np.array([-4, -8, -12, -16]) * math.log(2),
        },
    )
    baselines = likelihood.load_baselines([path])
    runs = pd.DataFrame({"dataset": ["digits"], "scores": [str(tmp_path / "run.npz")]})
    per_class = likelihood.baseline_per_class(baselines, runs).set_index(["label", "class"])["bits_per_dim"]
    assert per_class[("uniform", 0)] == pytest.approx(4.0)
    assert per_class[("independent pixels", 0)] == pytest.approx(1.5)  # (1 + 2) / 2 bits/dim
    assert per_class[("independent pixels", 1)] == pytest.approx(3.5)
    classes = pd.DataFrame(
        {"dataset": "digits", "model": "vae", "seed": 0, "class": [0, 1], "bits_per_dim": [2.0, 2.5]}
    )
    spec = likelihood.per_class_chart(classes, per_class.reset_index().assign(dataset="digits")).to_dict()
    marks = [layer["mark"] for layer in spec["concat"][0]["layer"]]
    assert [m["type"] for m in marks] == ["line", "line", "text"] and marks[1]["color"] == "gray"
    assert "grey dotted lines are the dataset's baselines per class" in spec["description"]


# --- on the smoke study's results -------------------------------------------------------------


@pytest.mark.workflow
def test_smoke_likelihood_tables_are_sane(smoke_study) -> None:
    tables = smoke_study / "results/tables"
    iwae = pd.read_csv(tables / "likelihood_iwae.csv")
    assert set(iwae["model"]) == {"vae", "vae_iaf", "flowpp"}
    curve = pd.read_csv(smoke_study / "results/tables/likelihood_iwae.csv")
    assert not curve.filter(like="k=").isna().all(axis=1).any()
    gaps = pd.read_csv(tables / "likelihood_gaps.csv")
    assert len(gaps) == 8 * 4 - 1 and not gaps.isna().any().any()  # ffjord is left out of textures
    per_class = pd.read_csv(tables / "likelihood_per_class.csv")
    assert set(per_class["dataset"]) == {"digits", "mnist"}
    assert per_class.filter(like="class ").notna().all().all()
    assert (per_class.filter(like="class ").to_numpy() > 0).all()


@pytest.mark.workflow
def test_smoke_likelihood_table_has_the_baselines_and_the_margins(smoke_study) -> None:
    import yaml

    config = yaml.safe_load((smoke_study / "config/smoke.yaml").read_text())
    table = pd.read_csv(smoke_study / "results/tables/likelihood.csv", dtype=str, keep_default_na=False)
    is_baseline = table["model"].str.endswith("(baseline)")
    assert set(table.loc[~is_baseline, "model"]) == set(config["models"])
    for dataset in config["datasets"]:
        found = json.loads((smoke_study / f"results/{dataset}/baselines.json").read_text())
        rows = table[is_baseline & (table["dataset"] == dataset)].set_index("model")
        assert len(rows) == len(found["baselines"]) == (1 if dataset == "toy2d" else 2)
        reference = next(entry for entry in found["baselines"] if entry["reference"])
        assert rows.loc[f"{reference['label']} (baseline)", "beats baseline"] == "reference"
        models = table[~is_baseline & (table["dataset"] == dataset)]
        for row in models.itertuples(index=False):
            test = float(row[table.columns.get_loc("test bits/dim")].split(" ")[0])
            margin = float(row[table.columns.get_loc("margin vs baseline (bits/dim)")])
            assert margin == pytest.approx(test - reference["bits_per_dim"]["test"], abs=2e-3)
            assert row[table.columns.get_loc("beats baseline")] == ("yes" if margin < 0 else "no")
        if found["levels"] is not None:
            uniform = next(entry for entry in found["baselines"] if entry["name"] == "uniform")
            assert uniform["bits_per_dim"]["test"] == math.log2(found["levels"])
            assert reference["bits_per_dim"]["train"] <= uniform["bits_per_dim"]["train"]


@pytest.mark.workflow
def test_smoke_iwae_is_at_least_the_elbo(smoke_study) -> None:
    from vaeflow.analysis.runs import load_probes

    probes = load_probes(sorted(smoke_study.glob("results/*/*/seed*/probes/likelihood.npz")))
    assert probes
    for p in probes:
        k, curve = p.arrays["k"], p.arrays["iwae_nats"]
        assert k[0] == 1 and np.isfinite(curve).all()
        assert curve[-1].mean() >= curve[0].mean(), (p.dataset, p.model)  # IWAE-k ≥ ELBO on average
