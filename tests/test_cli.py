"""The commands the rules call: one clear message on bad input, nothing half-written."""

import json
from pathlib import Path

import numpy as np
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
    run = {
        "dataset": "digits",
        "dataset_options": {},
        "data_seed": 0,
        "model": "vae",
        "options": {},
        "seed": 0,
        "training": {
            "batch_size": 8,
            "lr": 1e-3,
            "warmup_steps": 1,
            "grad_clip": 1.0,
            "eval_every": 1,
            "checkpoint_every": 1,
            "val_examples": 8,
            "steps": 1,
        },
    }
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


# --- a retrain and the results computed from the run (vaeflow.training.superseded) ---

EVALUATION = {"iwae_k": 4, "dequantization_draws": 1, "batch_size": 100, "samples": 4, "seed": 0, "train_examples": 50}


@pytest.fixture
def evaluated_run(tmp_path):
    """A tiny VAE trained and evaluated by the CLI, with a probe file beside it: the run folder,
    the data, the run config and the train command's arguments that name its results."""
    npz = tmp_path / "digits.npz"
    assert main(["prepare-data", "--dataset", "digits", "--out", str(npz)]) == 0
    run = {
        "dataset": "digits",
        "dataset_options": {},
        "data_seed": 0,
        "model": "vae",
        "options": {"latent_dim": 2, "hidden": 16, "layers": 1},
        "seed": 0,
        "training": {
            "batch_size": 32,
            "lr": 1e-3,
            "warmup_steps": 2,
            "grad_clip": 100.0,
            "eval_every": 5,
            "checkpoint_every": 5,
            "val_examples": 64,
            "steps": 10,
        },
    }
    d = tmp_path / "run"
    results = [d / "metrics.json", d / "samples.npz", d / "test_scores.npz", d / "probes"]
    assert main(["train", "--run", json.dumps(run), "--data", str(npz), "--out-dir", str(d), "--quiet"]) == 0
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(d / "checkpoint.pt"),
                "--train-summary",
                str(d / "train.json"),
                "--data",
                str(npz),
                "--settings",
                json.dumps(EVALUATION),
                "--metrics",
                str(results[0]),
                "--samples",
                str(results[1]),
                "--scores",
                str(results[2]),
            ]
        )
        == 0
    )
    (d / "probes").mkdir()
    (d / "probes" / "likelihood.npz").write_bytes(b"a probe")
    args = [a for path in results for a in ("--computed-from-run", str(path))]
    return d, npz, run, results, args


def _retrain(d, npz, run, args):
    return main(["train", "--run", json.dumps(run), "--data", str(npz), "--out-dir", str(d), "--quiet", *args])


def test_an_identical_retrain_restores_the_runs_results_untouched(evaluated_run, capsys):
    d, npz, run, results, args = evaluated_run
    metrics = json.loads(results[0].read_text())
    from vaeflow.training.superseded import file_sha256

    assert metrics["computed_from"]["checkpoint_sha256"] == file_sha256(d / "checkpoint.pt")
    stamps = {p: (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns) for p in results}
    (d / "checkpoint.pt").unlink()  # as Snakemake removes a job's outputs before it reruns it
    assert _retrain(d, npz, run, args) == 0
    assert "restored the results" in capsys.readouterr().out
    for path, (data, mtime) in stamps.items():
        assert path.exists() and path.stat().st_mtime_ns == mtime, path  # older than the new checkpoint, as before
        assert data is None or path.read_bytes() == data
    assert not (d / ".superseded").exists()


def test_a_different_retrain_deletes_the_runs_old_results(evaluated_run, capsys):
    d, npz, run, results, args = evaluated_run
    run["training"]["lr"] = 2e-3
    assert _retrain(d, npz, run, args) == 0
    assert "deleted the superseded results" in capsys.readouterr().out
    assert not any(p.exists() for p in results) and not (d / ".superseded").exists()


def test_a_failed_retrain_leaves_no_result_looking_current(evaluated_run, capsys):
    """The retrain fails (another trainer holds the run): the old results are out of place, so the
    workflow would rebuild them; the next retrain, identical, brings them back."""
    from vaeflow.training.engine import run_lock

    d, npz, run, results, args = evaluated_run
    with run_lock(d):
        assert _retrain(d, npz, run, args) == 1
    assert "another trainer is already training" in capsys.readouterr().err
    assert not any(p.exists() for p in results)
    assert (d / ".superseded" / "metrics.json").is_file()
    (d / "checkpoint.pt").unlink()
    assert _retrain(d, npz, run, args) == 0
    assert "restored the results" in capsys.readouterr().out
    assert all(p.exists() for p in results) and not (d / ".superseded").exists()


# --- the probes of one run, in one process, each memoised (vaeflow.probes.run) ---


def _probe_settings():
    import yaml

    from vaeflow.probes import NOTEBOOK_KEYS

    analyses = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/smoke.yaml").read_text())["analyses"]
    return {
        p: {"seed": 0, **{k: v for k, v in analyses[p].items() if k not in NOTEBOOK_KEYS[p]}}
        for p in ("likelihood", "latents")
    }


def _probe(d, npz, settings, out_dir, capsys):
    outs = [a for p in settings for a in ("--out", f"{p}={out_dir / (p + '.npz')}")]
    assert (
        main(
            [
                "probe",
                "--checkpoint",
                str(d / "checkpoint.pt"),
                "--data",
                str(npz),
                "--settings",
                json.dumps(settings),
                *outs,
            ]
        )
        == 0
    )
    return dict(
        line.split(": ", 1)[1].split(" ", 1)[::-1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("probe ")
    )


def _arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_the_probes_of_a_run_share_one_process_and_each_is_what_it_is_alone(evaluated_run, tmp_path, capsys):
    """Two probes in one job write the same arrays as each run alone (a fresh model per probe, its own seed)."""
    d, npz, *_ = evaluated_run
    settings = _probe_settings()
    together = _probe(d, npz, settings, tmp_path / "together", capsys)
    assert set(together.values()) == {"computed"}
    for name in settings:
        alone = tmp_path / f"alone_{name}"
        _probe(d, npz, {name: settings[name]}, alone, capsys)
        a, b = _arrays(tmp_path / "together" / f"{name}.npz"), _arrays(alone / f"{name}.npz")
        a.pop("seconds", None), b.pop("seconds", None)  # how long it took: the one array that may differ
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a), (
            name
        )


def test_a_probe_whose_settings_changed_is_recomputed_and_the_others_restored_byte_for_byte(
    evaluated_run, tmp_path, capsys
):
    d, npz, *_ = evaluated_run
    settings, out = _probe_settings(), tmp_path / "probes"
    _probe(d, npz, settings, out, capsys)
    before = {p: (out / f"{p}.npz").read_bytes() for p in settings}
    for p in settings:  # as Snakemake removes a job's outputs before it reruns it
        (out / f"{p}.npz").unlink()
    assert _probe(d, npz, settings, out, capsys) == {
        str(out / "likelihood.npz"): "restored",
        str(out / "latents.npz"): "restored",
    }
    assert all((out / f"{p}.npz").read_bytes() == before[p] for p in settings)
    settings["latents"]["max_test"] = 30
    assert _probe(d, npz, settings, out, capsys) == {
        str(out / "likelihood.npz"): "restored",
        str(out / "latents.npz"): "computed",
    }
    assert (out / "likelihood.npz").read_bytes() == before["likelihood"]
    assert len(_arrays(out / "latents.npz")["test_labels"]) == 30
