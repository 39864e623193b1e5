"""The cost analysis: time to target, equal-budget values, tables from run files, peak memory in train.json."""

import json
import math
import resource
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vaeflow.analysis import cost


def _curve(rows):
    return pd.DataFrame(rows, columns=["step", "elapsed_s", "val_bpd"])


# -- per-run computations: known answers and brute force -------------------------------------------


def test_time_to_target_known_answers():
    curve = _curve([(40, 4.0, 3.5), (10, 1.0, 5.0), (30, 3.0, 4.1), (20, 2.0, 3.9)])  # rows out of order
    assert cost.time_to_target(curve, 4.0) == (2.0, 20.0)
    assert cost.time_to_target(curve, 3.9) == (2.0, 20.0)  # "at or below"
    assert cost.time_to_target(curve, 3.6) == (4.0, 40.0)
    assert all(math.isnan(v) for v in cost.time_to_target(curve, 3.0))


def test_value_at_budget_known_answers():
    curve = _curve([(10, 1.0, 5.0), (20, 2.0, 3.9), (30, 3.0, 4.1), (40, 4.0, 3.5)])
    assert cost.value_at_budget(curve, 2.5) == (3.9, 20.0)
    assert cost.value_at_budget(curve, 3.5) == (3.9, 20.0)  # the kept (best) checkpoint, not the last
    assert cost.value_at_budget(curve, 4.0) == (3.5, 40.0)
    assert all(math.isnan(v) for v in cost.value_at_budget(curve, 0.5))


def test_time_to_target_and_budget_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        steps = np.sort(rng.choice(np.arange(1, 1000), n, replace=False))
        elapsed = np.sort(rng.uniform(0.1, 50, n))
        bpd = rng.uniform(1, 6, n)
        curve = _curve(list(zip(steps, elapsed, bpd)))
        target, budget = rng.uniform(1, 6), rng.uniform(0, 60)
        expected_t = next(((e, float(s)) for s, e, b in zip(steps, elapsed, bpd) if b <= target), (math.nan, math.nan))
        got_t = cost.time_to_target(curve, target)
        np.testing.assert_equal(got_t, expected_t)
        within = [(b, float(s)) for s, e, b in zip(steps, elapsed, bpd) if e <= budget]
        expected_b = min(within) if within else (math.nan, math.nan)
        np.testing.assert_equal(cost.value_at_budget(curve, budget), expected_b)


def _curves_frame():
    rows = []
    best = {("m1", 0): 2.0, ("m1", 1): 2.2, ("m2", 0): 3.0, ("m3", 0): 4.0, ("m3", 1): 5.0}
    for (model, seed), b in best.items():
        for step, extra in ((10, 1.0), (20, 0.0)):
            rows.append(
                {
                    "dataset": "d",
                    "model": model,
                    "seed": seed,
                    "step": step,
                    "elapsed_s": step / 10,
                    "val_bpd": b + extra,
                    "peak_rss_mib": math.nan,
                }
            )
    return pd.DataFrame(rows)


def test_targets_are_quantiles_of_model_bests_and_explicit_targets_win():
    curves = _curves_frame()
    runs = pd.DataFrame({"dataset": ["d", "e"]})
    # model bests (mean over seeds): m1 2.1, m2 3.0, m3 4.5
    assert cost.targets(curves, runs, {})["d"]["target"] == pytest.approx(3.0)
    assert cost.targets(curves, runs, {"target_quantile": 0.0})["d"]["target"] == pytest.approx(2.1)
    assert cost.targets(curves, runs, {"target_quantile": 1.0})["d"]["target"] == pytest.approx(4.5)
    assert cost.targets(curves, runs, {"target_quantile": 0.25})["d"]["target"] == pytest.approx(2.1 + 0.5 * 0.9)
    assert cost.targets(curves, runs, {"target_bpd": {"d": -0.5}})["d"]["target"] == -0.5  # real-valued data
    explicit = cost.targets(curves, runs, {"target_bpd": {"d": 2.5}})["d"]
    assert explicit == {"target": 2.5, "how": "set in the config"}
    assert math.isnan(cost.targets(curves, runs, {})["e"]["target"])  # dataset "e" has no curves


def test_budgets_are_a_fraction_of_the_shortest_mean_training_time():
    runs = pd.DataFrame(
        {
            "dataset": ["d"] * 4 + ["e"],
            "model": ["a", "a", "b", "b", "a"],
            "train_wall_time_s": [10.0, 20.0, 12.0, 14.0, 7.0],
        }
    )
    b = cost.budgets(runs, {})
    assert b["d"]["budget_s"] == pytest.approx(13.0)  # b's mean 13 < a's mean 15
    assert "(b)" in b["d"]["how"]
    assert cost.budgets(runs, {"budget_fraction": 0.5})["d"]["budget_s"] == pytest.approx(6.5)
    assert cost.budgets(runs, {"budget_s": {"e": 3.0}})["e"]["budget_s"] == 3.0


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"target_quantil": 0.5}, "unknown setting"),
        ({"target_quantile": 1.5}, "target_quantile"),
        ({"budget_fraction": 0}, "budget_fraction"),
        ({"budget_s": {"mnist": -1}}, "budget_s.mnist must be a positive"),
        ({"target_bpd": {"toy2d": float("nan")}}, "target_bpd.toy2d must be a finite"),
        ({"off_scale_factor": 1.0}, "off_scale_factor"),
    ],
)
def test_bad_settings_are_named(settings, match):
    with pytest.raises(ValueError, match=match):
        cost.resolve_settings(settings)


def test_formatting_known_answers():
    assert cost.sig(12345.0) == "12,300"
    assert cost.sig(0.012345) == "0.0123"
    assert cost.sig(2.0) == "2.00"
    assert cost.mean_sd(pd.Series([1.0, 2.0, 3.0])) == "2.00 ± 1.0"
    assert cost.mean_sd(pd.Series([4.0])) == "4.00"
    assert cost.mean_sd(pd.Series([1.0, math.nan])) == "1.00 (1 of 2 seeds)"
    assert cost.mean_sd(pd.Series([math.nan, math.nan])) == cost.NOT_RECORDED
    assert cost.mean_sd(pd.Series([1500.0, 1750.0]), integer=True) == "1,625 ± 177"


# -- the tables from run files ---------------------------------------------------------------------


def _write_run(
    root: Path,
    dataset,
    model,
    seed,
    *,
    wall,
    steps,
    samples,
    density,
    curve=None,
    peak=None,
    diagnostics=None,
    train_diagnostics=None,
    teacher=None,
    train_json=True,
):
    d = root / dataset / model / f"seed{seed}"
    d.mkdir(parents=True)
    metrics = {
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "parameters": 1000,
        "steps": steps,
        "eval_wall_time_s": 1.0,
        "device": "cpu",
        "trained_by": "maximum likelihood" if teacher is None else f"density distillation from {teacher}",
        "throughput": {"samples_per_s": samples, "density_evals_per_s": density},
        "val": {"bits_per_dim": 3.0},
        "test": {"bits_per_dim": 3.0},
        "diagnostics": diagnostics or {},
        "train_diagnostics": train_diagnostics or {},
    }
    (d / "metrics.json").write_text(json.dumps(metrics))
    if train_json:
        training = {"batch_size": 64, "lr": 0.001, **({"teacher": teacher} if teacher else {})}
        summary = {
            "run": {"training": training, "options": {"latent_dim": 4, "hidden": 32}},
            "options": {"latent_dim": 4, "hidden": 24},  # as built: the width fitted to a parameter budget
            "device": "cpu",
            "parameters": 1000,
            "steps": steps,
        }
        (d / "train.json").write_text(json.dumps(summary))
    timing = {
        "train_wall_time_s": wall,
        **({"peak_rss_mib": peak} if peak is not None else {}),
        "evaluations": [
            {"step": s, "elapsed_s": e, "peak_rss_mib": peak if peak is not None else math.nan}
            for s, e, _ in curve or []
        ],
    }
    (d / "timing.json").write_text(json.dumps(timing))
    if curve is not None:
        lines = ["step,train_loss,train_bits_per_dim,val_bits_per_dim,lr"]
        lines += [f"{s},1.0,1.0,{b!r},0.001" for s, e, b in curve]
        (d / "curves.csv").write_text("\n".join(lines) + "\n")
    return d / "metrics.json"


@pytest.fixture
def study(tmp_path):
    """digits: vae (fast, reaches the target), maf (MAF throughput), iaf (IAF throughput, off scale, a
    teacher), ffjord (NFE, first evaluation after the budget); toy2d: vae and maf, one without curves."""
    root = tmp_path / "results"
    w = _write_run
    paths = [
        w(
            root,
            "digits",
            "vae",
            0,
            wall=10.0,
            steps=1000,
            samples=5000.0,
            density=4000.0,
            peak=300.0,
            curve=[(500, 4.0, 2.5), (1000, 9.0, 2.0)],
        ),
        w(
            root,
            "digits",
            "vae",
            1,
            wall=14.0,
            steps=1000,
            samples=7000.0,
            density=6000.0,
            peak=500.0,
            curve=[(500, 6.0, 2.4), (1000, 13.0, 2.2)],
        ),
        w(
            root,
            "digits",
            "maf",
            0,
            wall=20.0,
            steps=1000,
            samples=100.0,
            density=10000.0,
            curve=[(250, 5.5, 3.0), (500, 10.0, 3.1), (1000, 19.0, 2.6)],
        ),  # train.json without peak memory
        w(
            root,
            "digits",
            "iaf",
            0,
            wall=30.0,
            steps=1000,
            samples=20000.0,
            density=200.0,
            teacher="maf",
            curve=[(500, 15.0, 900.0), (1000, 29.0, 800.0)],
        ),
        w(
            root,
            "digits",
            "ffjord",
            0,
            wall=40.0,
            steps=100,
            samples=50.0,
            density=20.0,
            curve=[(50, 20.0, 4.0), (100, 39.0, 3.5)],
            train_diagnostics={"nfe_forward_mean": 16.0, "nfe_backward": 0.0},
            diagnostics={"nfe_eval_mean": 26.0},
        ),
        w(
            root,
            "toy2d",
            "vae",
            0,
            wall=5.0,
            steps=500,
            samples=1e5,
            density=1e5,
            curve=[(250, 2.0, 3.0), (500, 4.5, 2.9)],
        ),
        w(root, "toy2d", "maf", 0, wall=6.0, steps=500, samples=1e4, density=1e5, train_json=False),
    ]
    return root, paths


def test_tables_from_run_files(study):
    _, paths = study
    runs = cost.load_runs(paths)
    curves = cost.load_curves(runs)
    assert len(runs) == 7 and len(curves) == 13
    target, budget = cost.targets(curves, runs, {}), cost.budgets(runs, {})
    # digits model bests: vae mean(2.0, 2.2) = 2.1, maf 2.6, iaf 800, ffjord 3.5 -> median (2.6 + 3.5)/2
    assert target["digits"]["target"] == pytest.approx(3.05)
    assert budget["digits"]["budget_s"] == pytest.approx(12.0)  # vae: mean(10, 14)
    per_run = cost.per_run(runs, curves, target, budget)

    summary = cost.summary_table(runs).set_index(["dataset", "model"])
    assert summary.loc[("digits", "vae"), "ms/step (incl. validation)"] == "12.0 ± 2.8"  # 10 and 14 ms
    assert summary.loc[("digits", "ffjord"), "ms/step (incl. validation)"] == "400"
    assert summary.loc[("digits", "vae"), "peak RSS (MiB)"] == "400 ± 140"
    assert summary.loc[("digits", "maf"), "peak RSS (MiB)"] == cost.NOT_RECORDED  # never invented
    assert summary.loc[("toy2d", "maf"), "peak RSS (MiB)"] == cost.NOT_RECORDED
    assert summary.loc[("toy2d", "maf"), "batch"] == cost.NOT_RECORDED
    assert summary.loc[("digits", "vae"), "batch"] == "64"
    assert summary.loc[("digits", "ffjord"), "NFE per training solve"] == "16.0"
    assert summary.loc[("digits", "ffjord"), "NFE per evaluation solve"] == "26.0"
    assert summary.loc[("digits", "vae"), "NFE per evaluation solve"] == "–"
    assert "teacher's cost not included" in summary.loc[("digits", "iaf"), "trained by"]
    assert "peak GPU (MiB)" not in summary.columns  # no CUDA run

    ttt = cost.time_to_target_table(per_run, target).set_index(["dataset", "model"])
    assert ttt.loc[("digits", "vae"), "time to target (s)"] == "5.00 ± 1.4"  # both seeds at their first evaluation
    assert ttt.loc[("digits", "vae"), "seeds reached"] == "2 of 2"
    assert ttt.loc[("digits", "vae"), "step at target"] == "500 ± 0"
    assert ttt.loc[("digits", "maf"), "time to target (s)"] == "5.50"
    assert ttt.loc[("digits", "iaf"), "time to target (s)"] == cost.NOT_REACHED
    assert ttt.loc[("digits", "ffjord"), "time to target (s)"] == cost.NOT_REACHED  # 3.5 > 3.05
    assert ttt.loc[("toy2d", "maf"), "time to target (s)"] == cost.NO_CURVES
    assert ttt.loc[("toy2d", "maf"), "seeds reached"] == "0 of 0 (1 without curves.csv)"

    bt = cost.budget_table(per_run, budget).set_index(["dataset", "model"])
    assert (
        bt.loc[("digits", "vae"), "val bits/dim within budget"] == "2.200 ± 0.28"
    )  # seed0 2.0 (at 9 s), seed1 2.4 (at 6 s)
    assert bt.loc[("digits", "maf"), "val bits/dim within budget"] == "3.000"
    assert bt.loc[("digits", "ffjord"), "val bits/dim within budget"] == "no validation within budget (first at 20.0 s)"
    assert list(bt.loc["digits", "rank within budget"]) == ["–", "–", "2", "1"]  # ffjord, iaf (first at 15 s), maf, vae
    assert bt.loc[("digits", "vae"), "training done at budget (%)"] == "75.0 ± 35"  # 100 % and 50 %
    assert bt.loc[("digits", "maf"), "training done at budget (%)"] == "50.0"  # best at step 250, last at 500
    assert bt.loc[("toy2d", "maf"), "val bits/dim within budget"] == cost.NO_CURVES
    vae1 = (per_run["dataset"] == "digits") & (per_run["model"] == "vae") & (per_run["seed"] == 1)
    lost = per_run.assign(has_curves=per_run["has_curves"] & ~vae1)  # as if vae seed 1 had lost its curves.csv
    bt2 = cost.budget_table(lost, budget).set_index(["dataset", "model"])
    assert bt2.loc[("digits", "vae"), "val bits/dim within budget"] == "2.000 (1 seed(s) without curves.csv)"

    values = cost.variables(runs, per_run, target, budget)
    v = values["digits"]
    assert (v["fastest_step_model"], v["slowest_step_model"]) == ("VAE", "FFJORD")
    assert v["step_time_ratio"] == 33.3  # 400 ms / 12 ms to 3 significant figures
    assert v["maf"]["density_over_sampling"] == pytest.approx(100.0)
    assert v["iaf"]["sampling_over_density"] == pytest.approx(100.0)
    assert (v["first_to_target_model"], v["first_to_target_s"]) == ("VAE", 5.0)
    assert v["models_reaching_target"] == 2
    assert (v["best_within_budget_model"], v["best_within_budget_bpd"]) == ("VAE", 2.2)
    assert (v["peak_rss_max_model"], v["peak_rss_max_mib"]) == ("VAE", 400.0)
    assert (v["ffjord"]["nfe_train_per_solve"], v["ffjord"]["nfe_eval_per_solve"]) == (16.0, 26.0)
    assert v["maf"]["nfe_train_per_solve"] == cost.NOT_RECORDED  # no ODE: nothing to count
    assert values["toy2d"]["peak_rss_max_mib"] == cost.NOT_RECORDED
    assert values["devices"] == ", ".join(sorted(set(runs["device"])))
    assert float(values["train_hours"].replace(",", "")) == pytest.approx(
        runs["train_wall_time_s"].sum() / 3600, rel=1e-2
    )
    vae = values["digits"]["vae"]  # each model's size, budget, options and speeds (means over seeds)
    assert (vae["parameters"], vae["steps"], vae["batch_size"]) == ("1,000", 1000, 64)
    assert (vae["step_ms"], vae["samples_per_s"], vae["train_s"]) == ("12.0", "6,000", "12.0")
    assert vae["options"] == "hidden = 24, latent_dim = 4" and vae["lr"] == 0.001  # as built, not as requested
    assert values["digits"]["iaf"]["trained_by"] == "density distillation from maf"
    assert values["toy2d"]["maf"]["batch_size"] == cost.NOT_RECORDED  # no train.json: never invented
    assert values["toy2d"]["maf"]["options"] == cost.NOT_RECORDED
    yaml.safe_dump(values)  # plain values only

    scale = cost.off_scale(curves, 2.0)
    assert list(scale["digits"]["models"]) == ["iaf"]
    spec = json.dumps(cost.val_vs_time_chart(curves, target, budget).to_dict())
    assert "off scale: iaf (best 800)" in spec
    cost.throughput_chart(runs).to_dict()


def test_benchmarks_are_joined_by_dataset_and_model(study):
    runs = cost.load_runs(study[1])
    bench = pd.DataFrame({"dataset": ["digits"], "model": ["vae"], "benchmark ms": [1.5]})
    table = cost.summary_table(runs, benchmarks=bench).set_index(["dataset", "model"])
    assert table.loc[("digits", "vae"), "benchmark ms"] == 1.5
    assert math.isnan(table.loc[("digits", "maf"), "benchmark ms"])
    with pytest.raises(ValueError, match="lacks column"):
        cost.summary_table(runs, benchmarks=pd.DataFrame({"model": ["vae"]}))


def test_missing_metrics_and_duplicates_are_errors(study, tmp_path):
    with pytest.raises(FileNotFoundError, match="evaluate that run"):
        cost.load_runs([tmp_path / "nowhere" / "metrics.json"])
    with pytest.raises(ValueError, match="same run given twice"):
        cost.load_runs([study[1][0], study[1][0]])


def test_notebook_writes_its_tables_figures_and_variables(study, tmp_path, root):
    from smoke import speed_part
    from vaeflow.analysis.notebooks import run_notebook  # the CLI's papermill wrapper

    _, paths = study
    out = tmp_path / "out"
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps(speed_part("vae", 1e9, 1e8, 0.9)))
    baselines = tmp_path / "baselines.json"  # the digits' independent pixels within the curves' range
    baselines.write_text(
        json.dumps(
            {  # the fields rule baselines writes that the shared reader needs
                "dataset": "digits",
                "levels": 17,
                "num_dims": 64,
                "test_scores": "baselines_test_scores.npz",
                "baselines": [
                    {
                        "name": "independent",
                        "label": "independent pixels",
                        "quantity": "exact discrete likelihood",
                        "parameters": 1088,
                        "reference": True,
                        "bits_per_dim": {"train": 2.3, "val": 2.3, "test": 2.3},
                    }
                ],
            }
        )
    )
    run_notebook(
        root / "workflow" / "notebooks" / "cost.ipynb",
        out / "cost.ipynb",
        {
            "metrics": [str(p) for p in paths],
            "settings": {"target_quantile": 0.5},
            "speed": str(speed),
            "baselines": [str(baselines)],
            "tables_dir": str(out / "tables"),
            "figures_dir": str(out / "figures"),
            "variables_out": str(out / "cost.yml"),
        },
        failed_dir=tmp_path / "failed",
    )
    for stem in cost.TABLES:
        assert (out / "tables" / f"{stem}.csv").exists() and (out / "tables" / f"{stem}.md").exists()
    for stem in cost.FIGURES:
        for ext in (".vl.json", ".svg", ".png"):
            assert (out / "figures" / f"{stem}{ext}").exists()
    values = yaml.safe_load((out / "cost.yml").read_text())["cost"]
    assert values["digits"]["fastest_step_model"] == "VAE"
    assert values["speed"]["vae_toy2d"]["step_ratio"] == 0.9
    nb = json.loads((out / "cost.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    # metrics, settings, speed, baselines, tables_dir, figures_dir, variables_out
    assert "".join(params["source"]).count("=") == 7
    spec = json.loads((out / "figures" / "cost_val_vs_time.vl.json").read_text())
    lines = [
        spec["datasets"][layer["data"]["name"]]
        for layer in spec["concat"][0]["layer"]
        if layer["mark"].get("color") == "gray" and layer["mark"]["type"] == "rule"
    ]
    assert lines == [[{"label": "independent pixels (baseline)", "val_bpd": 2.3}]]  # digits: a reference line


# -- the engine records peak memory --------------------------------------------------------------


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise AssertionError(f"{field} not in /proc/self/status")


TINY_RUN = {
    "dataset": "digits",
    "dataset_options": {},
    "data_seed": 0,
    "model": "realnvp",
    "options": {"hidden_channels": 4, "res_blocks": 1, "n_scales": 2},
    "seed": 0,
    "training": {
        "batch_size": 16,
        "lr": 1e-3,
        "warmup_steps": 4,
        "grad_clip": 100.0,
        "eval_every": 8,
        "checkpoint_every": 8,
        "val_examples": 64,
        "steps": 16,
    },
}


def test_engine_records_peak_memory(tmp_path):
    from vaeflow.data import build_dataset
    from vaeflow.training.engine import train

    run = TINY_RUN
    rss_before = _status_mib("VmRSS")
    held = []

    def allocate(step):  # touch 256 MiB after the first evaluation: the peak must rise by about that much
        if step == 9:
            held.append(np.ones(256 * 2**20 // 8))

    summary = train(run, build_dataset("digits", {}, 0), tmp_path, device="cpu", progress=False, on_step=allocate)
    hwm_after = _status_mib("VmHWM")
    saved = json.loads((tmp_path / "timing.json").read_text())
    assert saved["peak_rss_mib"] == summary["peak_rss_mib"]
    assert "peak_cuda_mib" not in saved  # CPU run
    assert rss_before + 0.9 * 256 <= saved["peak_rss_mib"] <= hwm_after + 1e-6  # MiB, not KiB
    assert saved["peak_rss_mib"] <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + 1e-6
    curves = pd.DataFrame(saved["evaluations"])
    assert list(curves["step"]) == [8, 16]
    peaks = curves["peak_rss_mib"].to_numpy()
    assert peaks[0] <= peaks[1] <= saved["peak_rss_mib"]
    assert peaks[1] >= rss_before + 0.9 * 256  # recorded after the allocation
    held.clear()


def test_engine_records_peak_cuda_memory(tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: peak_cuda_mib is recorded only on CUDA")
    from vaeflow.data import build_dataset
    from vaeflow.training.engine import train

    torch.cuda.reset_peak_memory_stats()
    summary = train(TINY_RUN, build_dataset("digits", {}, 0), tmp_path, device="cuda", progress=False)
    saved = json.loads((tmp_path / "timing.json").read_text())
    assert saved["peak_cuda_mib"] == summary["peak_cuda_mib"]
    assert 0 < saved["peak_cuda_mib"] == pytest.approx(torch.cuda.max_memory_allocated() / 2**20)


# -- the smoke study's outputs (run once the workflow has a cost_analysis rule) ---------------------


@pytest.mark.workflow
def test_smoke_cost_tables(smoke_study):
    tables = smoke_study / "results" / "tables"
    config = yaml.safe_load((smoke_study / "config" / "smoke.yaml").read_text())
    pairs = {
        (d, m)
        for d in config["datasets"]
        for m in config["models"]
        if d not in (config["models"][m].get("left_out") or {})
    }  # no runs where a model is left out
    assert ("textures", "ffjord") not in pairs
    for stem in set(cost.TABLES) - {"cost_speed_vs_peers"}:  # per dataset x model; the benchmark is per pair
        df = pd.read_csv(tables / f"{stem}.csv", keep_default_na=False)
        assert {tuple(r) for r in df[["dataset", "model"]].itertuples(index=False)} == pairs, stem
        assert len(df) == len(pairs), stem
        assert not (df == "nan").any().any(), f"{stem} holds an unexplained nan"

    summary = pd.read_csv(tables / "cost_summary.csv", keep_default_na=False)
    first = lambda s: float(str(s).split(" ")[0].replace(",", ""))  # noqa: E731
    for column in ("ms/step (incl. validation)", "train time (s)", "peak RSS (MiB)", "samples/s", "density evals/s"):
        values = summary[column].map(first)
        assert (values > 0).all(), column  # fresh runs: peak memory is recorded
    assert (summary["peak RSS (MiB)"].map(first) < 64 * 1024).all()
    ffjord = summary[summary["model"] == "ffjord"]
    assert (ffjord["NFE per training solve"].map(first) >= 1).all()

    ttt = pd.read_csv(tables / "cost_time_to_target.csv", keep_default_na=False)
    times = ttt["time to target (s)"]
    reached = times[times != cost.NOT_REACHED]
    assert len(reached) >= 1 and (reached.map(first) > 0).all()

    speed = pd.read_csv(tables / "cost_speed_vs_peers.csv", keep_default_na=False)
    assert set(speed["model"]) == set(config["models"])  # every model benchmarked (smoke: all datasets present)
    paired = speed[speed["peer"].str.split(" ").str[0] != "none"]
    assert set(speed["model"]) - set(paired["model"]) == {"flowpp"}  # no peer library implements Flow++
    for column in ("step ratio", "step ratio, same optimizer", "sampling ratio", "density ratio"):
        assert (paired[column].astype(float) > 0).all(), column
    assert (speed["% of matmul peak"].astype(float) > 0).all()

    budget = pd.read_csv(tables / "cost_budget.csv", keep_default_na=False)
    for dataset, group in budget.groupby("dataset"):
        ranks = sorted(int(r) for r in group["rank within budget"] if r != "–")
        assert ranks and ranks[0] == 1, dataset  # the fastest model was validated within its own time

    for stem in cost.FIGURES:
        assert (smoke_study / "results" / "figures" / f"{stem}.svg").stat().st_size > 0
    values = yaml.safe_load((smoke_study / "results" / "variables" / "cost.yml").read_text())["cost"]
    assert values["runs"] == len(pairs)
    for run_dir in (smoke_study / "results").glob("*/*/seed0"):
        if (run_dir / "timing.json").exists():
            assert json.loads((run_dir / "timing.json").read_text())["peak_rss_mib"] > 0


def test_the_site_shows_the_cost_tables_compactly_and_the_charts_in_the_sites_colours(study):
    from vaeflow.analysis import figures

    _, paths = study
    runs = cost.load_runs(paths)
    curves = cost.load_curves(runs)
    target, budget = cost.targets(curves, runs, {}), cost.budgets(runs, {})
    per_run = cost.per_run(runs, curves, target, budget)
    pm = "\u00a0±\u00a0"
    summary = cost.summary_shown(cost.summary_table(runs))
    table = summary.table.set_index(["dataset", "model"])
    assert list(table.index.get_level_values("model")[:4]) == ["vae", "iaf", "maf", "ffjord"]  # the site's order
    assert table.loc[("digits", "vae"), "ms/step (incl. validation)"] == f"12.0{pm}2.8"  # one line
    assert table.loc[("digits", "vae"), "trained by"] == "ML"  # the fixture trains every run by maximum likelihood
    assert "batch" in table.columns and "seeds" in table.columns  # they differ between rows here
    assert table.loc[("digits", "vae"), "parameters"] == "1,000"
    assert table.loc[("digits", "iaf"), "trained by"] == "distilled (maf)"
    assert any("*distilled (maf)*: " in note and "teacher's cost not included" in note for note in summary.notes)
    ttt = cost.time_to_target_shown(cost.time_to_target_table(per_run, target))
    assert "target val bits/dim" not in ttt.table.columns  # the targets are in the legend, once per dataset
    assert ttt.notes[0].startswith("Targets, validation bits/dim: digits 3.05 (") and "; toy2d " in ttt.notes[0]
    budgets = cost.budget_shown(cost.budget_table(per_run, budget))
    assert "budget (s)" not in budgets.table.columns and budgets.notes[0].startswith(
        "Budgets, seconds of training: digits 12.0 ("
    )
    for shown in (summary, ttt, budgets):
        cells = " | ".join(shown.table.astype(str).to_numpy().ravel())
        assert "nan" not in cells and " ± " not in cells
    for chart in (cost.val_vs_time_chart(curves, target, budget), cost.throughput_chart(runs)):
        spec = chart.to_dict()
        assert len(spec["description"].split()) > 20
    spec = cost.val_vs_time_chart(curves, target, budget).to_dict()
    scale = spec["concat"][0]["layer"][0]["encoding"]["color"]["scale"]
    assert scale["domain"] == ["vae", "iaf", "maf", "ffjord"]
    assert scale["range"] == [figures.MODEL_COLOURS[m] for m in scale["domain"]]
    assert "off the scale, named in the panel titles: iaf on digits" in spec["description"]
