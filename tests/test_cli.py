"""The commands the rules call: one clear message on bad input, nothing half-written."""

import json

import pytest

from vaeflow.cli import main


def test_unknown_dataset_is_named_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "results/data/cifar.npz"
    assert main(["prepare-data", "--dataset", "cifar", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cifar" in err and "digits" in err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_tampered_dataset_is_refused_by_training(tmp_path, capsys):
    npz = tmp_path / "digits.npz"
    assert main(["prepare-data", "--dataset", "digits", "--out", str(npz)]) == 0
    manifest = json.loads(npz.with_suffix(".json").read_text())
    first = next(iter(manifest["arrays"]))
    manifest["arrays"][first]["sha256"] = "0" * 64
    npz.with_suffix(".json").write_text(json.dumps(manifest))
    run = {"dataset": "digits", "dataset_options": {}, "data_seed": 0, "model": "vae", "options": {}, "seed": 0,
           "training": {"batch_size": 8, "lr": 1e-3, "warmup_steps": 1, "grad_clip": 1.0, "eval_every": 1,
                        "checkpoint_every": 1, "val_examples": 8, "steps": 1}}
    out_dir = tmp_path / "run"
    assert main(["train", "--run", json.dumps(run), "--data", str(npz), "--out-dir", str(out_dir), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "digits" in err and first in err
    assert not (out_dir / "checkpoint.pt").exists()


def test_bad_json_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prepare-data", "--dataset", "digits", "--options", "{bad", "--out", "x.npz"])
    assert exc.value.code == 2
    assert "not valid JSON" in capsys.readouterr().err
