"""The training engine: exact resume, atomic outputs, a loud stop on a non-finite loss."""

import json

import numpy as np
import pytest
import torch

from vaeflow.data import build_dataset
from vaeflow.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from vaeflow.training.engine import RESUME_FILE, NonFiniteLossError, train

OUTPUTS = ("checkpoint.pt", "curves.csv", "train.json", "timing.json")


def _run(model="realnvp", dataset="digits", steps=24, seed=0, **training):
    options = {
        "vae": {"latent_dim": 2, "hidden": 16, "layers": 1},
        "realnvp": {"hidden_channels": 4, "res_blocks": 1, "n_scales": 2},
    }[model]
    return {
        "dataset": dataset,
        "dataset_options": {},
        "data_seed": 0,
        "model": model,
        "options": options,
        "seed": seed,
        "training": {
            "batch_size": 16,
            "lr": 1e-3,
            "warmup_steps": 4,
            "grad_clip": 100.0,
            "eval_every": 8,
            "checkpoint_every": 4,
            "val_examples": 64,
            "steps": steps,
            **training,
        },
    }


@pytest.fixture(scope="module")
def digits():
    return build_dataset("digits", {}, 0)


class Interrupt(Exception):
    pass


def _interrupt_at(n):
    def hook(step):
        if step == n:
            raise Interrupt

    return hook


@pytest.mark.parametrize("model", ["realnvp", "vae"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, digits, model):
    run = _run(model)
    whole = train(run, digits, tmp_path / "whole", device="cpu", progress=False)

    with pytest.raises(Interrupt):
        train(run, digits, tmp_path / "resumed", device="cpu", progress=False, on_step=_interrupt_at(14))
    assert (tmp_path / "resumed" / RESUME_FILE).exists()
    assert not any((tmp_path / "resumed" / name).exists() for name in OUTPUTS), "no output before the run ends"
    saved = load_checkpoint(tmp_path / "resumed" / RESUME_FILE)
    assert saved["state"]["step"] == 12  # the last checkpoint before the interruption

    resumed = train(run, digits, tmp_path / "resumed", device="cpu", progress=False)
    assert not (tmp_path / "resumed" / RESUME_FILE).exists()
    assert resumed["best_val_bits_per_dim"] == whole["best_val_bits_per_dim"]
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    curves_a = (tmp_path / "whole" / "curves.csv").read_text().splitlines()
    curves_b = (tmp_path / "resumed" / "curves.csv").read_text().splitlines()

    def strip(rows):  # drop elapsed time
        return [",".join(r.split(",")[:5]) for r in rows]

    assert strip(curves_a) == strip(curves_b)


def test_resume_file_for_other_settings_is_ignored(tmp_path, digits):
    with pytest.raises(Interrupt):
        train(_run(), digits, tmp_path, device="cpu", progress=False, on_step=_interrupt_at(5))
    summary = train(_run(lr=2e-3), digits, tmp_path, device="cpu", progress=False)
    assert summary["steps"] == 24
    whole = train(_run(lr=2e-3), digits, tmp_path / "fresh", device="cpu", progress=False)
    assert summary["best_val_bits_per_dim"] == whole["best_val_bits_per_dim"]


def test_outputs_and_best_checkpoint(tmp_path, digits):
    summary = train(_run(steps=16), digits, tmp_path, device="cpu", progress=False)
    curves = np.genfromtxt(tmp_path / "curves.csv", delimiter=",", names=True)
    assert list(curves["step"]) == [8, 16]
    assert summary["best_val_bits_per_dim"] == pytest.approx(curves["val_bits_per_dim"].min())
    payload = load_checkpoint(tmp_path / "checkpoint.pt")
    assert payload["step"] == summary["best_step"]
    model = model_from_checkpoint(payload)
    assert (
        model.num_parameters()
        == summary["parameters"]
        == json.loads((tmp_path / "train.json").read_text())["parameters"]
    )


def test_non_finite_loss_stops_with_a_named_error(tmp_path, digits):
    with pytest.raises(NonFiniteLossError) as err:
        train(_run(lr=1e30, warmup_steps=0), digits, tmp_path, device="cpu", progress=False)
    message = str(err.value)
    for part in ("'realnvp'", "'digits'", "seed 0", "step"):
        assert part in message
    assert not any((tmp_path / name).exists() for name in OUTPUTS)


def test_seeding_asks_for_deterministic_kernels_without_loading_inductor():
    """seed_everything sets torch's deterministic-kernel flag (warn-only), as
    torch.use_deterministic_algorithms would, without importing TorchInductor (2 s per job)."""
    import subprocess
    import sys

    code = (
        "import sys, torch\nfrom vaeflow.training.seeding import seed_everything\nseed_everything(0)\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
        " 'torch._inductor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False"]


# --- faults a real user hits (issue 14): outdated or corrupt resume files, two trainers, bytes ---


def test_resume_file_from_other_code_is_set_aside_and_training_restarts(tmp_path, root):
    """Killed mid-run, the model's code edited, rerun: the old weights are never continued, and
    train.json's code hash is that of the code that ran every step (a real edit in a copy of src/)."""
    import hashlib
    import os
    import shutil
    import subprocess
    import sys

    src = tmp_path / "src"
    shutil.copytree(root / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = {**os.environ, "PYTHONPATH": str(src)}
    run = json.dumps(_run("vae", steps=24))
    out = tmp_path / "run"
    script = (
        "import json, sys\nfrom vaeflow.data import build_dataset\nfrom vaeflow.training.engine import train\n"
        "from vaeflow.hashing import training_code_hash\n"
        "def stop(step):\n    if step == int(sys.argv[2]): raise SystemExit(3)\n"
        "s = train(json.loads(sys.argv[1]), build_dataset('digits', {}, 0), sys.argv[3], device='cpu', progress=False,"
        " on_step=stop)\nprint('CODE', training_code_hash('vae'), s['code_hash'])\n"
    )
    first = subprocess.run([sys.executable, "-c", script, run, "14", str(out)], env=env, capture_output=True, text=True)
    assert first.returncode == 3, first.stderr
    assert load_checkpoint(out / RESUME_FILE)["state"]["step"] == 12

    vae = src / "vaeflow" / "models" / "vae.py"
    text = vae.read_text()
    assert "nn.ReLU()" in text
    vae.write_text(text.replace("nn.ReLU()", "nn.Tanh()"))
    second = subprocess.run(
        [sys.executable, "-c", script, run, "-1", str(out)], env=env, capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr
    assert "not resuming from" in second.stdout and "written by other code" in second.stdout
    assert "resuming vae" not in second.stdout
    now, recorded = second.stdout.split("CODE", 1)[1].split()
    assert now == recorded, "train.json names the code that trained every step"
    assert not (out / RESUME_FILE).exists() and not (out / "resume.outdated.pt").exists()

    # the result equals a run of the edited code from scratch, bit for bit
    fresh = subprocess.run(
        [sys.executable, "-c", script, run, "-1", str(tmp_path / "fresh")], env=env, capture_output=True, text=True
    )
    assert fresh.returncode == 0, fresh.stderr

    def digest(p):
        return hashlib.sha256((p / "checkpoint.pt").read_bytes()).hexdigest()

    assert digest(out) == digest(tmp_path / "fresh")
    assert (out / "curves.csv").read_text().split("\n")[1].split(",")[:4] == (
        tmp_path / "fresh" / "curves.csv"
    ).read_text().split("\n")[1].split(",")[:4]


def test_resume_file_for_other_data_is_set_aside(tmp_path, digits, capsys):
    with pytest.raises(Interrupt):
        train(_run(), digits, tmp_path, device="cpu", progress=False, on_step=_interrupt_at(5))
    other = build_dataset("digits", {}, 1)  # another split seed: other arrays, same settings
    train(_run(), other, tmp_path, device="cpu", progress=False)
    out = capsys.readouterr().out
    assert "written by other data" in out and "data_sha256" in out


def test_truncated_resume_file_is_set_aside_not_a_dead_end(tmp_path, digits, capsys):
    with pytest.raises(Interrupt):
        train(_run(), digits, tmp_path / "run", device="cpu", progress=False, on_step=_interrupt_at(14))
    resume = tmp_path / "run" / RESUME_FILE
    resume.write_bytes(resume.read_bytes()[:500])
    summary = train(_run(), digits, tmp_path / "run", device="cpu", progress=False)
    assert "cannot be read" in capsys.readouterr().out
    whole = train(_run(), digits, tmp_path / "whole", device="cpu", progress=False)
    assert summary["best_val_bits_per_dim"] == whole["best_val_bits_per_dim"]
    assert not resume.exists() and not resume.with_name("resume.outdated.pt").exists()


def test_a_second_trainer_on_the_same_run_directory_is_refused(tmp_path, digits):
    """A trainer orphaned by a killed Snakemake master still holds the run; a rerun's trainer
    stops at once, naming its pid, and runs normally once the first has gone."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib, time\nfrom vaeflow.training.engine import run_lock\n"
            "with run_lock(pathlib.Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(120)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=rf"pid {holder.pid} .*holds .*\.train\.lock.*kill") as err:
            train(_run(steps=8), digits, tmp_path, device="cpu", progress=False)
        assert "another trainer is already training" in str(err.value)
        assert not (tmp_path / RESUME_FILE).exists() and not (tmp_path / "checkpoint.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(_run(steps=8), digits, tmp_path, device="cpu", progress=False)["steps"] == 8


def test_identical_retrain_writes_identical_bytes_and_keeps_its_timing_apart(tmp_path, digits):
    """Everything a retrain computes (checkpoint, curves, summary) is byte-identical; what it cost
    (wall time, peak memory) is only in timing.json, with one entry per evaluation."""
    for name in ("a", "b"):
        train(_run(steps=16), digits, tmp_path / name, device="cpu", progress=False)
    for output in ("checkpoint.pt", "curves.csv", "train.json"):
        assert (tmp_path / "a" / output).read_bytes() == (tmp_path / "b" / output).read_bytes(), output
    timing = json.loads((tmp_path / "a" / "timing.json").read_text())
    assert timing["train_wall_time_s"] > 0 and timing["peak_rss_mib"] > 0
    assert [e["step"] for e in timing["evaluations"]] == [8, 16]
    assert (
        0 < timing["evaluations"][0]["elapsed_s"] < timing["evaluations"][1]["elapsed_s"] <= timing["train_wall_time_s"]
    )


class _RunsCode:
    """Unpickling this would call os.system: a hostile checkpoint."""

    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_a_hostile_checkpoint_is_refused_without_advice_to_unpickle_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": _RunsCode()}, tmp_path / "checkpoint.pt")
    with pytest.raises(RuntimeError) as err:
        load_checkpoint(tmp_path / "checkpoint.pt")
    message = str(err.value)
    assert "refused to load checkpoint" in message and str(tmp_path / "checkpoint.pt") in message
    assert "posix.system" in message and "delete it" in message
    assert "weights_only" not in message and "False" not in message
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs: writing more fails with ENOSPC, as on a full disk (needs root to mount)."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root) to fill a disk")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_names_the_file_and_says_no_space(full_disk, digits):

    (full_disk / "run").mkdir()
    old = full_disk / "run" / "checkpoint.pt"
    old.write_bytes(b"old")
    with pytest.raises(OSError) as err:
        save_checkpoint(old, {"weights": torch.zeros(200_000)})  # 800 kB
    message = str(err.value)
    assert f"cannot write {old}: No space left on device (ENOSPC)" in message
    assert "free space" in message and "nothing was written there" in message
    assert old.read_bytes() == b"old"
    assert sorted(p.name for p in old.parent.iterdir()) == ["checkpoint.pt"], "no temporary file left behind"


def test_the_train_command_reports_a_full_disk_in_one_line(full_disk, tmp_path, capsys):
    from vaeflow.cli import main
    from vaeflow.data import save_prepared

    data = tmp_path / "digits.npz"
    save_prepared(build_dataset("digits", {}, 0), data, data.with_suffix(".json"))
    run = _run("vae", steps=8)
    run["options"] = {"latent_dim": 2, "hidden": 512, "layers": 2}  # a checkpoint bigger than the disk
    code = main(
        [
            "train",
            "--run",
            json.dumps(run),
            "--data",
            str(data),
            "--out-dir",
            str(full_disk / "run"),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"vaeflow train: error: cannot write {full_disk / 'run'}/") and err.count("\n") == 1
    assert "No space left on device" in err and "free space" in err and "inline_container" not in err


# --- early stopping (patience on validation bits/dim; steps is the ceiling) ---


def test_training_stops_once_validation_stops_improving(tmp_path, digits):
    """With lr 0 the weights never move, so validation bits/dim is the same at every evaluation
    (fixed noise): the first evaluation is the best, and `patience` evaluations later it stops."""
    summary = train(
        _run("vae", steps=400, lr=0.0, patience=2, min_delta=0.001), digits, tmp_path, device="cpu", progress=False
    )
    assert summary["steps"] == 8 * 3 and summary["best_step"] == 8  # evaluations at 8, 16, 24
    assert summary["converged"] is True and summary["stopped_by"] == "patience"
    curves = np.genfromtxt(tmp_path / "curves.csv", delimiter=",", names=True)
    assert list(curves["step"]) == [8, 16, 24]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 8


def test_improvements_smaller_than_min_delta_do_not_reset_patience(tmp_path, digits):
    run = _run("realnvp", steps=48, patience=2, min_delta=100.0)  # no improvement is that large
    summary = train(run, digits, tmp_path, device="cpu", progress=False)
    assert summary["steps"] == 24 and summary["converged"] is True
    curves = np.genfromtxt(tmp_path / "curves.csv", delimiter=",", names=True)
    assert summary["best_step"] == int(curves["step"][np.argmin(curves["val_bits_per_dim"])])


def test_a_run_that_reaches_the_ceiling_is_not_converged(tmp_path, digits):
    summary = train(_run("realnvp", steps=16, patience=50), digits, tmp_path, device="cpu", progress=False)
    assert summary["steps"] == 16 and summary["converged"] is False and summary["stopped_by"] == "ceiling"
    summary = train(_run("realnvp", steps=16), digits, tmp_path / "no_patience", device="cpu", progress=False)
    assert summary["converged"] is False and summary["stopped_by"] == "ceiling"


def test_early_stopping_resumes_exactly(tmp_path, digits):
    run = _run("vae", steps=400, lr=0.0, patience=3, min_delta=0.001)
    whole = train(run, digits, tmp_path / "whole", device="cpu", progress=False)
    with pytest.raises(Interrupt):
        train(run, digits, tmp_path / "resumed", device="cpu", progress=False, on_step=_interrupt_at(18))
    resumed = train(run, digits, tmp_path / "resumed", device="cpu", progress=False)
    assert (resumed["steps"], resumed["best_step"], resumed["converged"]) == (whole["steps"], whole["best_step"], True)


def test_each_plateau_cuts_the_learning_rate_until_the_cuts_run_out(tmp_path, digits):
    """lr_decays 2: the first two plateaus multiply the learning rate by lr_decay_factor and training
    goes on; the third stops it. Every step of the curve logs the rate it trained at."""
    run = _run("realnvp", steps=400, patience=1, min_delta=100.0, lr_decays=2, lr_decay_factor=0.5)
    summary = train(run, digits, tmp_path, device="cpu", progress=False)
    curves = np.genfromtxt(tmp_path / "curves.csv", delimiter=",", names=True)
    # the evaluation at 8 improves on nothing (inf); no later one improves by 100: cut at 16 and 24, stop at 32
    assert list(curves["step"]) == [8, 16, 24, 32]
    assert summary["steps"] == 32 and summary["converged"] is True and summary["stopped_by"] == "patience"
    assert list(curves["lr"]) == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])


def test_a_run_with_learning_rate_cuts_resumes_exactly(tmp_path, digits):
    run = _run("realnvp", steps=400, patience=1, min_delta=100.0, lr_decays=2, lr_decay_factor=0.5)
    whole = train(run, digits, tmp_path / "whole", device="cpu", progress=False)
    with pytest.raises(Interrupt):
        train(run, digits, tmp_path / "resumed", device="cpu", progress=False, on_step=_interrupt_at(26))
    resumed = train(run, digits, tmp_path / "resumed", device="cpu", progress=False)
    assert (resumed["steps"], resumed["best_step"]) == (whole["steps"], whole["best_step"])
    a = np.genfromtxt(tmp_path / "whole/curves.csv", delimiter=",", names=True)
    b = np.genfromtxt(tmp_path / "resumed/curves.csv", delimiter=",", names=True)
    assert list(a["lr"]) == list(b["lr"]) and np.allclose(a["val_bits_per_dim"], b["val_bits_per_dim"])
