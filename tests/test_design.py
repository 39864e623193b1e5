"""The models page's design section: budgets, the logit-alpha choice against its sweep, left-out runs."""

import copy
import json

import pytest

from vaeflow.config import load_config, run_config
from vaeflow.site.design import markdown, write_design


@pytest.fixture()
def study(root, tmp_path):
    text = (root / "config/smoke.yaml").read_text()
    text = text.replace(
        "models:\n", "parameter_budget: {digits: 3000}\nlogit_alpha: {digits: 0.01, mnist: 0.05}\n\nmodels:\n", 1
    )
    text = text.replace("logit_alpha: 0.05, hidden: 16", "hidden: 16")
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path, load_config(path, root / "config/schema.yaml")


def _sweep(config, values):
    rows = []
    for (dataset, alpha), bpd in values.items():
        run = copy.deepcopy(run_config(config, dataset, "maf", 0))
        run["options"]["logit_alpha"] = alpha
        rows.append(
            {
                "dataset": dataset,
                "alpha": alpha,
                "val_bpd": bpd,
                "best_step": 100,
                "steps": 140,
                "converged": True,
                "parameters": 1234,
                "run": run,
            }
        )
    return {"model": "maf", "rows": rows}


def test_the_chosen_alpha_is_compared_with_the_sweeps_best(study):
    _, config = study
    sweep = _sweep(
        config, {("digits", 0.01): 2.10, ("digits", 0.05): 2.15, ("mnist", 0.01): 2.40, ("mnist", 0.05): 2.45}
    )
    text = markdown(config, sweep)
    assert "digits 3,000 parameters" in text
    assert "- digits: α = 0.01, the sweep's best on the validation split, 0.0500 bits/dim below the next α." in text
    assert (
        "- MNIST-14: α = 0.05 is **not** the sweep's best on the validation split (α = 0.01, 2.4000 bits/dim)." in text
    )
    assert text.count("| yes |") == 2  # the rows of the α in use
    assert "other settings" not in text


def test_a_sweep_run_at_other_settings_is_called_stale(study):
    _, config = study
    sweep = _sweep(config, {("digits", 0.01): 2.10, ("digits", 0.05): 2.15})
    for row in sweep["rows"]:
        row["run"]["training"]["steps"] += 1
    text = markdown(config, sweep)
    assert "The sweep ran at other settings than this build's; rerun `python benchmarks/logit_alpha.py`" in text
    assert "- MNIST-14: α = 0.05, not covered by the sweep." in text


def test_no_sweep_says_the_values_are_not_chosen_by_evidence(study):
    _, config = study
    assert "are the config's, not chosen by evidence in this build" in markdown(config, None)


def test_left_out_runs_are_listed_with_reason_and_measured_step(study, tmp_path, root):
    path, config = study
    plain = markdown(config, None)
    assert (
        "- ffjord on textures: left out to exercise the left_out setting in the tests. Its cost per step was not "
        "measured" in plain
    )
    speed = {
        "left_out": [
            {"model": "ffjord", "dataset": "textures", "batch_size": 32, "parameters": 4321, "step_time_s": 1.234}
        ]
    }
    (tmp_path / "speed.json").write_text(json.dumps(speed))
    out = tmp_path / "design.md"
    write_design(out, [str(path)], str(root / "config/schema.yaml"), None, str(tmp_path / "speed.json"))
    assert "one training step of 32 examples at 4,321 parameters took 1.23 s." in out.read_text()
