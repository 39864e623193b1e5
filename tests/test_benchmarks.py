"""benchmarks/speed.py: FLOPs counted against a hand count, the merge of per-model parts, and one
real (tiny) pair timed end to end; the cost analysis's table and variables from its output."""

import json
import sys

import pytest
import torch
from torch import nn

from smoke import speed_part
from vaeflow.analysis import cost


@pytest.fixture(scope="module")
def speed(root):
    sys.path.insert(0, str(root / "benchmarks"))
    import speed as module

    return module


def test_step_flops_match_the_hand_count_of_a_linear_layer(speed):
    """y = xWᵀ + b: forward 2·B·I·O; backward the input gradient and the weight gradient, 2·B·I·O
    each (the bias gradient is a sum, not a matmul): 6·B·I·O in all."""
    batch, inp, out = 8, 5, 3
    layer = nn.Linear(inp, out)
    x = torch.randn(batch, inp, requires_grad=True)
    side = speed.Side("test", layer, lambda y: layer(y).square().sum(), lambda n: None, lambda y: None, lambda y: y)
    assert speed.step_flops(side, x) == 6 * batch * inp * out


def test_step_flops_count_inside_autograd_grad(speed):
    """FFJORD's exact trace calls torch.autograd.grad in its forward pass; the counter must see it."""
    layer = nn.Linear(4, 4, bias=False)

    def loss(y):
        y = y.requires_grad_(True)
        f = layer(y)
        (g,) = torch.autograd.grad(f.sum(), y, create_graph=True)
        return f.sum() + g.sum()

    side = speed.Side("test", layer, loss, lambda n: None, lambda y: None, lambda y: y)
    assert speed.step_flops(side, torch.randn(2, 4)) > 2 * 2 * 4 * 4


def test_matmul_peak_is_two_n_cubed_over_the_best_time(speed, monkeypatch):
    times = iter([0.5, 0.25, 1.0])
    monkeypatch.setattr(speed, "_timed", lambda fn: next(times))
    assert speed.matmul_peak(n=8, reps=3) == 2 * 8**3 / 0.25


def test_merge_orders_rows_and_rescales_to_the_median_peak(speed, tmp_path):
    paths = []
    for model, peak in (("flowpp", 3e9), ("realnvp", 1e9), ("maf", 2e9)):
        paths.append(tmp_path / f"{model}.json")
        paths[-1].write_text(json.dumps(speed_part(model, peak, 1e8, None if model == "flowpp" else 0.5)))
    speed.merge(paths, tmp_path / "out")
    merged = json.loads((tmp_path / "out" / "speed.json").read_text())
    assert [r["model"] for r in merged["results"]] == ["maf", "realnvp", "flowpp"]  # the registry's order
    assert merged["matmul_peak_flop_per_s"] == 2e9
    assert all(r["ours"]["fraction_of_peak"] == pytest.approx(0.05) for r in merged["results"])
    text = (tmp_path / "out" / "speed.md").read_text()
    assert "| flowpp | toy2d |" in text and "none" in text


def test_every_model_of_the_registry_is_timed(speed):
    """A model is timed with no entry of its own: a VAE on MNIST, a flow on the 2-D data, and a one-pass
    flow with a peer also on the digits as vectors."""
    from vaeflow.models import registry

    pairs = speed.pairs()
    assert [m for m, _, shape in pairs if shape == "native"] == list(registry())
    assert {(m, d) for m, d, shape in pairs if shape == "native" and registry()[m].latent_kind == "vae"} == {
        ("vae", "mnist"),
        ("vae_iaf", "mnist"),
    }
    assert sorted(m for m, d, shape in pairs if shape == "vector") == ["glow", "maf", "realnvp"]
    assert all(d == "digits" for _, d, shape in pairs if shape == "vector")


def test_merge_refuses_parts_timed_differently(speed, tmp_path):
    a, b = speed_part("maf", 1e9, 1e8, 0.5), speed_part("realnvp", 1e9, 1e8, 0.5)
    b["settings"]["reps"] = 5
    for name, part in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    with pytest.raises(ValueError, match="other settings"):
        speed.merge([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "out")


def test_one_pair_end_to_end_on_a_tiny_study(speed, root, tmp_path):
    """A real MAF against zuko's MAF on 2-D data: both sides timed, parameters matched, ratios
    consistent with the times."""
    from vaeflow.data import build_dataset, save_prepared

    data = build_dataset("toy2d", {"density": "eight_gaussians", "n_train": 300, "n_val": 50, "n_test": 60}, 0)
    save_prepared(data, tmp_path / "toy2d.npz", tmp_path / "toy2d.json")
    config = {
        "datasets": {"toy2d": {}},
        "training": {"batch_size": 32},
        "models": {"maf": {"steps": {"toy2d": 1}, "options": {"blocks": 2, "hidden": 16, "layers": 1}}},
    }
    row = speed.benchmark_pair("maf", "toy2d", "native", config, tmp_path, reps=2, min_time=0.01, n=20)
    ours, peer = row["ours"], row["peer"]
    assert peer["implementation"] == "zuko.flows.MAF"
    assert abs(peer["parameters"] - ours["parameters"]) <= 0.1 * ours["parameters"]
    assert row["step_time_ratio"] == pytest.approx(ours["step_time_s"] / peer["step_time_s"])
    assert row["density_time_ratio"] == pytest.approx(peer["density_evals_per_s"] / ours["density_evals_per_s"])
    assert ours["step_flops"] > 0 and len(ours["step_time_reps_s"]) == 2


def test_cost_table_and_variables_from_a_benchmark(tmp_path):
    part = speed_part("maf", 1e9, 1e8, 0.8)
    part["results"] += speed_part("vae", 1e9, 3e8, 1.2)["results"] + speed_part("flowpp", 1e9, 5e7, None)["results"]
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(part))
    speed_results = cost.load_speed(path)
    table = cost.speed_table(speed_results).set_index("model")
    assert table.loc["maf", "step ratio"] == "0.80" and table.loc["flowpp", "step ratio"] == "–"
    assert table.loc["vae", "% of matmul peak"] == "30" and table.loc["vae", "ours GFLOP/s"] == "0.300"
    values = cost.speed_variables(speed_results)
    assert values["pairs"] == 2 and values["pairs_faster"] == 1
    assert values["worst_same_optimizer_model"] == "VAE" and values["worst_same_optimizer_ratio"] == 1.2
    assert values["best_peak_model"] == "VAE" and values["best_peak_percent"] == 30.0
    assert values["maf_toy2d"]["step_ratio"] == 0.8 and "step_ratio" not in values["flowpp_toy2d"]
    shown = cost.speed_shown(cost.speed_table(speed_results))  # as the site shows it: 11 short columns
    rows = shown.table.set_index("model")
    assert len(shown.table.columns) == 11 and list(rows.index) == ["MAF", "VAE", "Flow++"]
    ours, peer = part["results"][0]["ours"], part["results"][0]["peer"]
    assert (
        rows.loc["MAF", "ms/step, ours / peer"]
        == f"{1000 * ours['step_time_s']:.2f} / {1000 * peer['step_time_s']:.2f}"
    )
    assert rows.loc["MAF", "peer"] == peer["implementation"].split()[0] and rows.loc["Flow++", "peer"] == "none"
    assert rows.loc["Flow++", "params, ours / peer"] == f"{part['results'][2]['ours']['parameters']:,}"
    assert f"MAF: {peer['implementation']}" in shown.notes[1] and "implements Flow++" in shown.notes[1]


def test_cost_speed_input_errors_say_how_to_rebuild(tmp_path):
    with pytest.raises(ValueError, match="snakemake --cores 2 results/benchmarks/speed.json"):
        cost.load_speed(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a benchmarks/speed.py result"):
        cost.load_speed(tmp_path / "other.json")


def test_a_left_out_model_is_timed_at_its_budget_width_and_merged(speed, root, tmp_path):
    """What leaving FFJORD out of a dataset saved, per step: measured at the width the budget gives."""
    from vaeflow.config import load_config
    from vaeflow.data import build_dataset, save_prepared
    from vaeflow.models.capacity import TOLERANCE

    config = load_config(root / "config/smoke.yaml", root / "config/schema.yaml")
    config["parameter_budget"] = {"textures": 2000}
    data = build_dataset("textures", config["datasets"]["textures"], 0)
    save_prepared(data, tmp_path / "textures.npz", tmp_path / "textures.json")
    row = speed.left_out_step("ffjord", "textures", config, tmp_path, reps=2, min_time=0.0)
    assert row["model"] == "ffjord" and row["dataset"] == "textures" and row["batch_size"] == 32
    assert 2000 / TOLERANCE <= row["parameters"] <= 2000 * TOLERANCE
    assert len(row["step_time_reps_s"]) == 2 and row["step_time_s"] > 0
    assert row["reason"] == "left out to exercise the left_out setting in the tests"
    parts = []
    for i, model in enumerate(("maf", "ffjord")):
        part = speed_part(model, 1e9, 1e8, 0.5)
        part["left_out"] = [row] if model == "ffjord" else []
        parts.append(tmp_path / f"{i}.json")
        parts[-1].write_text(json.dumps(part))
    speed.merge(parts, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "speed.json").read_text())["left_out"] == [row]
    assert "Left out of the study: ffjord on textures" in (tmp_path / "out" / "speed.md").read_text()


@pytest.fixture(scope="module")
def pipeline(root):
    sys.path.insert(0, str(root / "benchmarks"))
    import pipeline

    return pipeline


def test_the_masters_own_cpu_time_grows_with_its_own_work_only(pipeline):
    import os
    import subprocess
    import time

    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc on this system: the pipeline benchmark reports no master CPU time here")
    before = pipeline._own_cpu_s(os.getpid())
    started = time.process_time()
    while time.process_time() - started < 0.3:  # 0.3 s of this process's own CPU
        pass
    subprocess.run(
        [sys.executable, "-c", "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"],
        check=True,
    )  # a child's CPU is not the master's
    grown = pipeline._own_cpu_s(os.getpid()) - before
    assert 0.25 <= grown < 0.5 + 0.25, grown


def test_stage_times_sum_each_stages_jobs_once(pipeline, tmp_path):
    metadata = tmp_path / ".snakemake" / "metadata"
    metadata.mkdir(parents=True)
    jobs = [
        ("train", 1, 0, 10),
        ("train", 1, 0, 10),
        ("train", 2, 5, 25),
        ("probe_latents", 3, 0, 4),
        ("probe_likelihood_latents", 4, 0, 6),
        ("likelihood_analysis", 5, 0, 3),
        ("stage_site", 6, 0, 1),
        ("code_digest", 7, 0, 0.5),
    ]
    for i, (rule, job, start, end) in enumerate(jobs):  # one record per output file: a job has several
        (metadata / f"r{i}").write_text(json.dumps({"rule": rule, "job_hash": job, "starttime": start, "endtime": end}))
    assert pipeline.stage_times(tmp_path) == {
        "code digests": {"jobs": 1, "job_s": 0.5},
        "train": {"jobs": 2, "job_s": 30.0},
        "probes": {"jobs": 2, "job_s": 10.0},
        "analyses": {"jobs": 1, "job_s": 3.0},
        "site": {"jobs": 1, "job_s": 1.0},
    }


def test_the_pythae_peer_computes_our_vae(speed):
    """The speed ratio compares code, not models: pythae's VAE with our likelihood, given our VAE's
    weights, has our negative ELBO on the same batch and the same reparameterisation noise."""
    from vaeflow.models import build_model

    torch.manual_seed(0)
    options = {"latent_dim": 3, "hidden": 8, "layers": 2}
    ours = build_model("vae", (1, 4, 4), 17, options)
    peer = speed.pythae_vae((1, 4, 4), 17, options, hidden=8, iaf=False)
    peer.module.encoder.net.load_state_dict(ours.encoder.state_dict())
    peer.module.decoder.net.load_state_dict(ours.decoder.state_dict())
    x = torch.randint(0, 17, (6, 1, 4, 4)).float()
    torch.manual_seed(1)
    expected = ours.loss(x)
    torch.manual_seed(1)
    got = peer.loss(peer.prepare(x))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() > 0


def test_the_config_the_workflow_passes_keeps_its_numbers(speed, tmp_path):
    """The workflow passes the study config as JSON, which writes 1e-6 as ``1e-06``: read as YAML 1.1 that
    is a string, and the MNIST logit squeeze failed the speed benchmark's left-out FFJORD step."""
    config = {"models": {"ffjord": {"dataset_options": {"mnist": {"logit_alpha": 1.0e-6}}}}, "lr": 0.001}
    text = json.dumps(config)
    assert "1e-06" in text
    assert speed.read_config(text) == config
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  ffjord:\n    dataset_options:\n      mnist: {logit_alpha: 1.0e-6}\nlr: 0.001\n")
    assert speed.read_config(str(path)) == config
