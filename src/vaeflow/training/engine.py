"""One training engine for every model of the study.

Adam with linear warm-up, gradient clipping, validation bits/dim every
``eval_every`` steps with the best model kept, deterministic seeding, a tqdm
progress bar, atomic resume checkpoints, and a hard stop on a non-finite loss.

Mixed precision (``training.precision: bf16``): on CUDA the training forward pass runs under
``torch.autocast(dtype=torch.bfloat16)`` (Micikevicius et al. 2018); the models keep every
log-det, log-density and the loss in float32 (:mod:`vaeflow.models.precision`); parameters,
gradients and the Adam state stay float32, and bfloat16 has float32's exponent range, so no
loss scaling is needed. Validation (and every evaluation) runs in float32. ``train.json``
records the precision that actually ran (:func:`training_precision`).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vaeflow.data import PreparedDataset
from vaeflow.data.dequantization import model_input, to_tensor
from vaeflow.evaluation.bits import bits_per_dim
from vaeflow.hashing import config_hash, training_code_hash
from vaeflow.io import write_json_atomic, write_text_atomic
from vaeflow.models import DensityModel, build_model
from vaeflow.models.capacity import fit_to_budget
from vaeflow.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vaeflow.training.seeding import resolve_device, seed_everything

RESUME_FILE = "resume.pt"
#: where an outdated or unreadable resume file is set aside (never continued); removed when the run ends
OUTDATED_RESUME_FILE = "resume.outdated.pt"
#: what a run's training cost (wall time, peak memory), apart from what it computed (see _write_outputs)
TIMING_FILE = "timing.json"
#: the lock one trainer holds on its run directory while it trains (it names the holder's pid)
LOCK_FILE = ".train.lock"

#: ``training.precision`` values and the autocast dtype of each (None: no autocast, float32).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or gradient)."""


class RunLockedError(RuntimeError):
    """Another trainer is training in the same run directory."""


@contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for one trainer, or fail naming the trainer that holds it.

    A Snakemake master killed mid-run leaves its training child running; after ``--unlock`` a
    rerun would start a second trainer on the same ``resume.pt`` and log. ``flock`` is released by
    the kernel when the holder exits, however it ends, so a stale lock file never blocks a rerun.
    """
    path = out_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "an unknown process"
            raise RunLockedError(
                f"another trainer is already training in {out_dir}: {holder} holds {path}. Two trainers "
                f"would write the same resume file; wait for it to finish, or stop it (kill its pid), "
                f"then rerun."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def data_digest(data: PreparedDataset) -> str:
    """Short sha256 over every array of the prepared dataset (splits and labels): the data a run trains on."""
    digest = hashlib.sha256()
    for name, array in sorted(data.arrays().items()):
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(memoryview(array.tobytes()))
    return digest.hexdigest()[:16]


@dataclass
class TrainState:
    """Everything needed to continue a run exactly where it stopped."""

    step: int = 0
    best_val_bpd: float = math.inf
    best_step: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    curves: list[dict[str, float]] = field(default_factory=list)
    window: list[float] = field(default_factory=list)  # training losses since the last evaluation
    elapsed: float = 0.0
    peak_rss_mib: float = 0.0  # process peak carried over a resume (a resumed job is a new process)
    plateau_bpd: float = math.inf  # validation bits/dim at the last improvement by at least min_delta
    stale_evaluations: int = 0  # evaluations since then
    lr_decays: int = 0  # times the learning rate has been cut on a plateau (training.lr_decays)
    stopped_by: str = ""  # "patience" (validation stopped improving) or "ceiling" (the step budget ran out)


def early_stopping(settings: dict[str, Any]) -> tuple[int | None, float]:
    """``(patience, min_delta)`` of ``training``: stop once ``patience`` evaluations in a row have not
    lowered validation bits/dim by at least ``min_delta`` below the last such improvement (Prechelt
    1998, "Early stopping — but when?"); ``patience`` None (absent) trains the whole ``steps`` budget,
    which is otherwise the ceiling. The checkpoint is always the best validation step's weights.

    With ``lr_decays`` n > 0 the first n plateaus do not stop the run: each multiplies the learning
    rate by ``lr_decay_factor`` and training goes on (the usual reduce-on-plateau schedule); the
    (n+1)-th plateau stops it."""
    patience = settings.get("patience")
    return (None if patience is None else int(patience)), float(settings.get("min_delta", 0.0))


def peak_memory_mib(device: torch.device, carried: float = 0.0) -> dict[str, float]:
    """This process's peak resident memory (``ru_maxrss``, KiB on Linux) and, on CUDA, peak allocated GPU memory,
    in MiB."""
    peak = {"peak_rss_mib": max(carried, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if device.type == "cuda":
        peak["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def training_precision(requested: str, device: torch.device, model: DensityModel) -> tuple[str, str]:
    """The precision training runs at for ``training.precision = requested`` on ``device``, and
    why it is not the one requested (``""`` when it is).

    ``bf16`` autocasts on CUDA only. It falls back to float32, recorded and printed, on a CPU (the
    study's small-scale path; bfloat16 matrix products are no faster there on most CPUs), on a GPU
    without native bfloat16, and for a model whose ``mixed_precision`` is False (FFJORD).
    """
    if requested not in PRECISIONS:
        raise ValueError(
            f"training.precision is {requested!r}; use one of {', '.join(PRECISIONS)} (config/schema.yaml)"
        )
    if PRECISIONS[requested] is None:
        return requested, ""
    name = type(model).__name__
    if device.type != "cuda":
        return "fp32", f"training.precision {requested} autocasts on CUDA only; {name} trained in fp32 on {device.type}"
    if not model.mixed_precision:
        return "fp32", f"{name} needs float32 throughout (its mixed_precision is False); it trained in fp32"
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        return "fp32", f"{torch.cuda.get_device_name(device)} has no native bfloat16; {name} trained in fp32"
    return requested, ""


def _validation_bpd(model: DensityModel, x_val: torch.Tensor, levels: int | None, seed: int, batch: int) -> float:
    """Mean validation bits/dim with fixed noise: the same draws at every evaluation; float32 always
    (autocast off, even inside a caller's mixed-precision region)."""
    model.eval()
    generator = torch.Generator(device=x_val.device).manual_seed(seed)
    total = 0.0
    with (
        torch.no_grad(),
        torch.autocast(x_val.device.type, enabled=False),
        torch.random.fork_rng(devices=[] if x_val.device.type == "cpu" else [x_val.device]),
    ):
        torch.manual_seed(seed)
        for start in range(0, len(x_val), batch):
            xb = model_input(x_val[start : start + batch], levels, model.discrete, generator)
            total += float(model.log_prob(xb).sum())
    model.train()
    return float(bits_per_dim(total / len(x_val), model.num_dims))


def _fail(run: dict[str, Any], step: int, what: str, value: float) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"non-finite {what} ({value}) at step {step} training model {run['model']!r} on dataset "
        f"{run['dataset']!r} with seed {run['seed']}. Nothing was written to results; lower "
        f"training.lr or training.grad_clip for this model in the config, or check the data."
    )


def adam(parameters, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015) with torch's fused kernel where it has one (CPU, CUDA).

    The default for-each-parameter Adam launches about ten small ops per parameter tensor;
    on one CPU thread that was 1.3 ms of a 4.6 ms Real NVP step on 2-D data (56 tensors) and
    0.7 ms of a 3.2 ms VAE step on MNIST; the fused step takes 0.2 ms. Same update rule.
    """
    fused = torch.device(device).type in ("cpu", "cuda")
    return torch.optim.Adam(parameters, lr=lr, fused=fused or None)


def train(
    run: dict[str, Any],
    data: PreparedDataset,
    out_dir: str | Path,
    device: str = "auto",
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    teacher: DensityModel | None = None,
) -> dict[str, Any]:
    """Train one run; write ``checkpoint.pt``, ``curves.csv``, ``train.json`` and ``timing.json`` to ``out_dir``.

    ``run`` is a run config (:func:`vaeflow.config.run_config`). A ``resume.pt`` left
    in ``out_dir`` by an interrupted run with the same settings, code
    (:func:`vaeflow.hashing.training_code_hash`) and data is continued from its last
    checkpoint; one written for anything else, or unreadable, is set aside and training
    starts afresh. One trainer at a time holds ``out_dir`` (:func:`run_lock`). ``on_step(step)`` is
    called after every optimisation step (tests use it to interrupt a run).

    With a ``teacher`` (a trained, frozen density model) the objective is probability
    density distillation, ``model.distillation_loss(teacher, batch_size)`` (the student
    draws its own samples; the data serve only for validation), as Parallel WaveNet
    trains an IAF from a MAF.

    ``training.patience`` (with ``min_delta``, :func:`early_stopping`) stops training once validation
    bits/dim stops improving; ``steps`` is then the ceiling. ``train.json`` records ``converged`` (True
    only when patience stopped it), ``stopped_by``, the steps run and the best step.

    ``training.precision`` (absent: ``fp32``) ``bf16`` runs each step's forward pass under
    bfloat16 autocast on CUDA; where it cannot, training runs in float32 and ``train.json`` says
    so (:func:`training_precision`): it records ``precision`` (what ran), ``precision_requested``
    and ``precision_note``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(out_dir):
        return _train(run, data, out_dir, device, progress, on_step, teacher)


def _train(
    run: dict[str, Any],
    data: PreparedDataset,
    out_dir: Path,
    device: str,
    progress: bool,
    on_step: Callable[[int], None] | None,
    teacher: DensityModel | None,
) -> dict[str, Any]:
    """:func:`train`'s body, run while this process holds the run directory's lock."""
    settings = run["training"]
    run_key = config_hash(run)
    dev = resolve_device(device)
    seed_everything(run["seed"])

    options = run["options"]
    if run.get("parameter_budget"):  # matched capacity: the width whose parameter count is nearest the budget
        options = fit_to_budget(run["model"], data.example_shape, data.levels, options, run["parameter_budget"])
    model = build_model(run["model"], data.example_shape, data.levels, options).to(dev)
    if ("teacher" in settings) != (teacher is not None):
        raise ValueError(
            f"run of {run['model']!r} on {run['dataset']!r}: the config names teacher "
            f"{settings.get('teacher')!r} but the trainer got {'one' if teacher else 'none'}"
        )
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    requested = settings.get("precision", "fp32")
    precision, precision_note = training_precision(requested, dev, model)
    if precision_note:
        print(f"note: {precision_note}")
    autocast_dtype = PRECISIONS[precision]
    x_train = to_tensor(data.train).to(dev)
    x_val = to_tensor(data.val[: settings["val_examples"]]).to(dev)
    optimizer = adam(model.parameters(), settings["lr"], dev)
    warmup = max(1, settings["warmup_steps"])
    state = TrainState()
    decays, decay_factor = int(settings.get("lr_decays", 0)), float(settings.get("lr_decay_factor", 0.1))
    # warm-up, then the learning rate times decay_factor per plateau passed (state.lr_decays, restored on resume)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * decay_factor**state.lr_decays
    )
    batches = torch.Generator().manual_seed(run["seed"])
    noise = torch.Generator(device=dev).manual_seed(run["seed"] + 1)
    permutation: torch.Tensor | None = None  # order of the epoch in progress
    cursor = 0

    resume_path = out_dir / RESUME_FILE
    identity = {"run_key": run_key, "code_hash": training_code_hash(run["model"]), "data_sha256": data_digest(data)}
    saved = _resumable(resume_path, identity)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        batches.set_state(saved["batches_rng"])
        noise.set_state(saved["noise_rng"])
        torch.set_rng_state(saved["torch_rng"])
        if dev.type == "cuda" and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], dev)  # the models' own draws (VAE noise, ...)
        state = TrainState(**saved["state"])
        permutation, cursor = saved["permutation"], saved["cursor"]
        print(
            f"resuming {run['model']} on {run['dataset']} seed {run['seed']} from step {state.step} "
            f"(same settings, code {identity['code_hash']} and data {identity['data_sha256']})"
        )

    patience, min_delta = early_stopping(settings)
    started = time.perf_counter() - state.elapsed
    bar = tqdm(
        total=settings["steps"],
        initial=state.step,
        disable=not progress,
        desc=f"{run['model']}/{run['dataset']}/seed{run['seed']}",
        mininterval=2.0,
    )
    model.train()
    while state.step < settings["steps"] and not state.stopped_by:
        if permutation is None or cursor + settings["batch_size"] > len(permutation):
            permutation = torch.randperm(len(x_train), generator=batches)
            cursor = 0
        idx = permutation[cursor : cursor + settings["batch_size"]].to(dev)
        cursor += settings["batch_size"]
        xb = model_input(x_train[idx], data.levels, model.discrete, noise)
        if state.step == 0:
            with torch.no_grad():
                model.initialize(xb)
        with torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = model.loss(xb) if teacher is None else model.distillation_loss(teacher, settings["batch_size"])
        if loss.dtype in (torch.bfloat16, torch.float16):
            raise RuntimeError(
                f"{type(model).__name__}.loss returned a {loss.dtype} loss (training.precision {precision}); the "
                f"loss must be float32: read network outputs through vaeflow.models.precision.full_precision "
                f"and sum log-dets with sum_per_example"
            )
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise _fail(run, state.step, "loss", loss_value)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
        if not torch.isfinite(grad_norm):
            raise _fail(run, state.step, "gradient norm", float(grad_norm))
        optimizer.step()
        scheduler.step()
        state.step += 1
        state.window.append(loss_value)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.2f}", bpd=f"{bits_per_dim(-loss_value, model.num_dims):.3f}", refresh=False)

        if state.step % settings["eval_every"] == 0 or state.step == settings["steps"]:
            val_bpd = _validation_bpd(model, x_val, data.levels, seed=run["seed"], batch=256)
            if not math.isfinite(val_bpd):
                raise _fail(run, state.step, "validation bits/dim", val_bpd)
            train_loss = sum(state.window) / len(state.window)
            state.window.clear()
            state.peak_rss_mib = peak_memory_mib(dev, state.peak_rss_mib)["peak_rss_mib"]
            state.curves.append(
                {
                    "step": state.step,
                    "train_loss": train_loss,
                    "train_bits_per_dim": float(bits_per_dim(-train_loss, model.num_dims)),
                    "val_bits_per_dim": val_bpd,
                    "lr": scheduler.get_last_lr()[0],
                    "elapsed_s": time.perf_counter() - started,
                    "peak_rss_mib": state.peak_rss_mib,
                }
            )
            if val_bpd < state.best_val_bpd:
                state.best_val_bpd, state.best_step = val_bpd, state.step
                state.best_state = copy.deepcopy(model.state_dict())
            if val_bpd < state.plateau_bpd - min_delta:
                state.plateau_bpd, state.stale_evaluations = val_bpd, 0
            else:
                state.stale_evaluations += 1
            if patience is not None and state.stale_evaluations >= patience and state.lr_decays < decays:
                state.lr_decays += 1
                state.stale_evaluations = 0
                print(
                    f"step {state.step}: validation bits/dim has not improved by {min_delta} in {patience} "
                    f"evaluations; learning rate x{decay_factor:g} ({state.lr_decays} of {decays} cuts)"
                )
            elif patience is not None and state.stale_evaluations >= patience:
                state.stopped_by = "patience"
                print(
                    f"stopping at step {state.step}: validation bits/dim has not improved by {min_delta} in "
                    f"{patience} evaluations; best {state.best_val_bpd:.4f} at step {state.best_step}"
                )
        if state.step % settings["checkpoint_every"] == 0 and state.step < settings["steps"] and not state.stopped_by:
            state.elapsed = time.perf_counter() - started
            save_checkpoint(
                resume_path,
                {
                    **identity,  # run_key, code_hash, data_sha256: a resume continues only the same run
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "batches_rng": batches.get_state(),
                    "noise_rng": noise.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                    "permutation": permutation,
                    "cursor": cursor,
                    "state": state.__dict__,
                },
            )
        if on_step is not None:
            on_step(state.step)
    bar.close()
    state.elapsed = time.perf_counter() - started
    state.stopped_by = state.stopped_by or "ceiling"
    return _write_outputs(
        run,
        options,
        identity,
        model,
        data,
        state,
        out_dir,
        dev,
        resume_path,
        {"precision": precision, "precision_requested": requested, "precision_note": precision_note},
    )


def _resumable(resume_path: Path, identity: dict[str, str]) -> dict[str, Any] | None:
    """The resume file's contents if it continues this very run (same settings, code and data);
    otherwise None, with an unreadable or outdated file set aside as ``resume.outdated.pt`` and
    the reason printed. A run is never continued from weights that other code or data produced."""
    if not resume_path.exists():
        return None
    aside = resume_path.with_name(OUTDATED_RESUME_FILE)
    try:
        # on the CPU: the RNG states must be CPU tensors; load_state_dict moves the rest to the device
        saved = load_checkpoint(resume_path, map_location="cpu")
    except CheckpointError as exc:
        reason = f"it cannot be read ({exc.reason})"
    else:
        differs = [
            f"{key} {saved.get(key, 'not recorded')} (now {value})"
            for key, value in identity.items()
            if saved.get(key) != value
        ]
        if not differs:
            return saved
        what = {"run_key": "settings", "code_hash": "code", "data_sha256": "data"}
        reason = (
            "it was written by other " + " and ".join(what[d.split()[0]] for d in differs) + ": " + "; ".join(differs)
        )
    os.replace(resume_path, aside)
    print(f"not resuming from {resume_path}: {reason}. Set aside as {aside}; training starts from step 0.")
    return None


def _write_outputs(
    run: dict[str, Any],
    options: dict[str, Any],
    identity: dict[str, str],
    model: DensityModel,
    data: PreparedDataset,
    state: TrainState,
    out_dir: Path,
    device: torch.device,
    resume_path: Path,
    precision: dict[str, str],
) -> dict[str, Any]:
    """Write the best checkpoint, the learning curves, the training summary and its timing; drop the resume file.

    What training computed (``checkpoint.pt``, ``curves.csv``, ``train.json``) is kept apart from what
    it cost (``timing.json``: wall time and peak memory, overall and at every evaluation), so that a
    retrain that computes the same thing rewrites the first three byte for byte and only the results
    that report time and memory rerun downstream. Returns the summary with the timing merged in.
    """
    assert state.best_state is not None, "the final step always evaluates"
    save_checkpoint(
        out_dir / "checkpoint.pt",
        {
            "model": run["model"],
            "options": options,  # as built: the config's, with the width fitted to a parameter budget
            "data_shape": list(data.example_shape),
            "levels": data.levels,
            "state_dict": state.best_state,
            "step": state.best_step,
            "val_bits_per_dim": state.best_val_bpd,
            **identity,
        },
    )
    header = ["step", "train_loss", "train_bits_per_dim", "val_bits_per_dim", "lr"]
    rows = [",".join(header)] + [
        ",".join(repr(float(c[h])) if h != "step" else str(c[h]) for h in header) for c in state.curves
    ]
    write_text_atomic(out_dir / "curves.csv", "\n".join(rows) + "\n")
    summary = {
        "run": run,
        "options": options,  # the model's options as built (run["options"] with a fitted width)
        **identity,  # run_key (settings), code_hash (the code of every step), data_sha256
        "steps": state.step,
        "best_step": state.best_step,
        "best_val_bits_per_dim": state.best_val_bpd,
        # converged: stopped because validation stopped improving, not because the step ceiling ran out
        "converged": state.stopped_by == "patience",
        "stopped_by": state.stopped_by,
        "parameters": model.num_parameters(),
        "device": str(device),
        **precision,  # precision (what ran), precision_requested, precision_note (why they differ)
        "threads": torch.get_num_threads(),
        "diagnostics": model.diagnostics(),  # e.g. FFJORD's function evaluations during training
    }
    timing = {
        "train_wall_time_s": state.elapsed,
        **peak_memory_mib(device, state.peak_rss_mib),  # peak_rss_mib; peak_cuda_mib on CUDA
        "evaluations": [
            {"step": c["step"], "elapsed_s": c["elapsed_s"], "peak_rss_mib": c["peak_rss_mib"]} for c in state.curves
        ],
    }
    write_json_atomic(out_dir / TIMING_FILE, timing)
    write_json_atomic(out_dir / "train.json", summary)
    resume_path.unlink(missing_ok=True)
    resume_path.with_name(OUTDATED_RESUME_FILE).unlink(missing_ok=True)
    return {**summary, **timing}
