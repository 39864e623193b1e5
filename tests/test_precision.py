"""Mixed precision: log-dets, log-densities and losses stay float32 under bfloat16 autocast.

CPU autocast really runs ``nn.Linear``/``nn.Conv2d`` in bfloat16 (inputs and weights rounded to
bfloat16, products accumulated in float32, outputs rounded to bfloat16), so these tests need no GPU.

The sharp check: a float32 run in which every ``Linear``/``Conv2d`` input, output and residual sum
is rounded to bfloat16 by hooks (weights are put on the bfloat16 grid beforehand) performs exactly
autocast's roundings and nothing else. If every log-det and log-density past the networks is
computed and summed in float32, the two agree to float32 summation order (measured: bit for bit);
a single bfloat16 accumulator would put ``log p`` off by up to half a bfloat16 ulp,
``2⁻⁹·|log p| ≈ 0.4`` nats on an 8x8 image, about 2000 times the tolerance.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from vaeflow.data import build_dataset
from vaeflow.models import build_model
from vaeflow.models.coupling import MLP, AffineCoupling, ResidualBlock, half_mask
from vaeflow.models.distributions import discretized_logistic_log_prob, standard_normal_log_prob
from vaeflow.models.glow import CouplingConvNet, GlowCoupling
from vaeflow.models.maf import MaskedAffineAutoregressive
from vaeflow.models.mixture_coupling import vector_mixture_coupling
from vaeflow.models.transforms import Bijection, LogitPreprocess
from vaeflow.training import engine

IMAGE, LEVELS = (1, 8, 8), 17
CASES = {
    "realnvp-image": ("realnvp", IMAGE, LEVELS, {"hidden_channels": 8, "res_blocks": 1, "n_scales": 2}),
    "realnvp-2d": ("realnvp", (2,), None, {"coupling_layers": 4, "hidden": 16}),
    "glow-image": ("glow", IMAGE, LEVELS, {"hidden_channels": 8, "steps": 2, "n_levels": 2}),
    "glow-2d": ("glow", (2,), None, {"vector_steps": 3, "hidden": 16}),
    "maf-image": ("maf", IMAGE, LEVELS, {"blocks": 2, "hidden": 32}),
    "maf-2d": ("maf", (2,), None, {"blocks": 3, "hidden": 16}),
    "iaf-2d": ("iaf", (2,), None, {"blocks": 2, "hidden": 16}),
    "vae-image": ("vae", IMAGE, LEVELS, {"latent_dim": 4, "hidden": 32}),
    "vae-2d": ("vae", (2,), None, {"latent_dim": 2, "hidden": 16}),
    "vae_iaf-image": ("vae_iaf", IMAGE, LEVELS, {"latent_dim": 4, "hidden": 32, "iaf_hidden": 16, "context_dim": 4}),
    "flowpp-image": (
        "flowpp",
        IMAGE,
        LEVELS,
        {"hidden_channels": 8, "steps": 1, "n_scales": 2, "dequant_steps": 1, "components": 2},
    ),
    "flowpp-2d": ("flowpp", (2,), None, {"coupling_layers": 2, "hidden": 16, "components": 2}),
}


def _round_bf16(t):
    return t.to(torch.bfloat16).to(t.dtype) if torch.is_tensor(t) and t.is_floating_point() else t


def _model_and_batch(case: str, batch: int = 32):
    """A tiny model whose zero-initialised output layers are perturbed (so every network matters),
    with weights on the bfloat16 grid, and a batch in its input space."""
    name, shape, levels, options = CASES[case]
    torch.manual_seed(0)
    model = build_model(name, shape, levels, options)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(_round_bf16(p + 0.05 * torch.randn_like(p)))
    model.eval()
    if levels is None:
        x = torch.randn(batch, *shape)
    else:
        x = torch.randint(0, levels, (batch, *shape)).float()
        if not model.discrete:
            x = x + torch.rand_like(x)
    return model, x


def _emulate_autocast(model: nn.Module) -> list:
    """Hooks that make a float32 forward pass round like bfloat16 autocast: the inputs and outputs of
    every Linear/Conv2d, and the sum of every residual block (a bfloat16 + bfloat16 add)."""
    handles = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            handles.append(module.register_forward_pre_hook(lambda m, args: tuple(_round_bf16(a) for a in args)))
            handles.append(module.register_forward_hook(lambda m, args, out: _round_bf16(out)))
        elif isinstance(module, ResidualBlock):
            handles.append(module.register_forward_hook(lambda m, args, out: _round_bf16(out)))
    return handles


def _seeded(fn, x):
    torch.manual_seed(1)  # the same VAE noise / Flow++ dequantisation draw in every call
    return fn(x)


@pytest.mark.parametrize("case", list(CASES))
def test_bf16_autocast_log_prob_and_loss_are_float32_and_exact_past_the_networks(case):
    model, x = _model_and_batch(case)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_prob = _seeded(model.log_prob, x)
        loss = _seeded(model.loss, x)
    assert log_prob.dtype == torch.float32 and loss.dtype == torch.float32
    handles = _emulate_autocast(model)
    try:
        ref_log_prob = _seeded(model.log_prob, x)
        ref_loss = _seeded(model.loss, x)
    finally:
        for handle in handles:
            handle.remove()
    # float32 summation order at most (module docstring); a bfloat16 sum would miss by ~2^-9·|log p|
    torch.testing.assert_close(log_prob, ref_log_prob, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)
    assert (log_prob - ref_log_prob).abs().max() < 1e-3 * (2.0**-9 * ref_log_prob.abs().max())


@pytest.mark.parametrize("case", list(CASES))
def test_bf16_autocast_log_prob_stays_within_bf16_rounding_of_fp32(case):
    """Against a plain float32 pass the networks' own bfloat16 roundings remain: each output is off by
    at most half an ulp, 2^-9 relative, and they enter log p to first order, so we allow 2^-9·|log p|
    plus 0.01 nats (the 2-D densities are a few nats). Measured: at most 4e-4·|log p| on images."""
    model, x = _model_and_batch(case)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_prob = _seeded(model.log_prob, x)
    reference = _seeded(model.log_prob, x)
    assert torch.isfinite(log_prob).all()
    assert ((log_prob - reference).abs() <= 2.0**-9 * reference.abs() + 0.01).all()


@pytest.mark.parametrize("case", list(CASES))
def test_every_transform_returns_float32_under_autocast(case):
    model, x = _model_and_batch(case, batch=4)
    seen: dict[str, tuple[torch.dtype, torch.dtype]] = {}

    def record(module, args, out):
        if isinstance(out, tuple) and len(out) == 2:
            seen[type(module).__name__] = (out[0].dtype, out[1].dtype)

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, Bijection)]
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.loss(x)
    finally:
        for handle in handles:
            handle.remove()
    if CASES[case][0] not in ("vae", "vae_iaf", "iaf"):  # these compose no Bijection modules in loss()
        assert seen, "the flow ran no Bijection: the test no longer sees its transforms"
    wrong = {name: dtypes for name, dtypes in seen.items() if dtypes != (torch.float32, torch.float32)}
    assert not wrong, f"(output, log-det) dtypes under autocast: {wrong}"


def test_single_transforms_keep_float32_logdets_under_autocast():
    torch.manual_seed(0)
    transforms = {
        "affine coupling": AffineCoupling(half_mask(6, 0), MLP(6, 12, 16, 2)),
        "glow coupling": GlowCoupling(4, CouplingConvNet(2, 4, 8)),
        "made affine": MaskedAffineAutoregressive(6, 16),
        "mixture coupling": vector_mixture_coupling(6, 0, 16, 2, 3),
        "logit": LogitPreprocess(LEVELS),
    }
    inputs = {"glow coupling": torch.randn(5, 4, 4, 4), "logit": LEVELS * torch.rand(5, 6)}
    for name, transform in transforms.items():
        with torch.no_grad():
            for p in transform.parameters():
                p.add_(0.1 * torch.randn_like(p))
        x = inputs.get(name, torch.randn(5, 6))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z, logdet = transform(x)
            z16, logdet16 = transform(x.bfloat16())  # even a bfloat16 input gives a float32 log-det
        assert (z.dtype, logdet.dtype, logdet16.dtype) == (torch.float32,) * 3, name
        assert logdet.shape == (5,), name
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v, logdet = transforms["made affine"].inverse_and_logdet(torch.randn(5, 6))  # IAF's density direction
    assert (v.dtype, logdet.dtype) == (torch.float32, torch.float32)


def test_log_densities_of_bf16_network_outputs_are_summed_in_float32():
    torch.manual_seed(0)
    z = (3 * torch.randn(8, 784)).bfloat16()
    got = standard_normal_log_prob(z)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, standard_normal_log_prob(z.float()), rtol=1e-6, atol=1e-4)
    # a bfloat16 total of about -4000 nats is only resolved to 16 nats
    assert (got - got.bfloat16().float()).abs().max() > 0.1
    x = torch.randint(0, LEVELS, (8, 64)).float()
    mean, log_scale = (LEVELS * torch.rand(8, 64)).bfloat16(), torch.randn(8, 64).bfloat16()
    mass = discretized_logistic_log_prob(x, mean, log_scale, LEVELS)
    assert mass.dtype == torch.float32
    torch.testing.assert_close(mass, discretized_logistic_log_prob(x, mean.float(), log_scale.float(), LEVELS))


def test_ffjord_solves_in_float32_even_under_autocast():
    torch.manual_seed(0)
    model = build_model("ffjord", (2,), None, {"hidden": 16, "layers": 1})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(16, 2)
    assert model.mixed_precision is False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_prob = model.log_prob(x)
    assert log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob, model.log_prob(x), rtol=0, atol=0)


# --- the engine option ----------------------------------------------------------------------


def _run(model="realnvp", steps=8, **training):
    options = {"realnvp": {"hidden_channels": 4, "res_blocks": 1, "n_scales": 2}, "ffjord": {"hidden": 8, "layers": 1}}[
        model
    ]
    return {
        "dataset": "digits",
        "dataset_options": {},
        "data_seed": 0,
        "model": model,
        "options": options,
        "seed": 0,
        "training": {
            "batch_size": 16,
            "lr": 1e-3,
            "warmup_steps": 2,
            "grad_clip": 100.0,
            "eval_every": 4,
            "checkpoint_every": 4,
            "val_examples": 64,
            "steps": steps,
            **training,
        },
    }


@pytest.fixture(scope="module")
def digits():
    return build_dataset("digits", {}, 0)


def test_bf16_on_cpu_trains_in_fp32_and_train_json_says_so(tmp_path, digits, capsys):
    summary = engine.train(_run(precision="bf16"), digits, tmp_path / "bf16", device="cpu", progress=False)
    assert "autocasts on CUDA only" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "bf16" / "train.json").read_text())
    assert recorded["precision"] == summary["precision"] == "fp32"
    assert recorded["precision_requested"] == "bf16"
    assert "CUDA" in recorded["precision_note"] and "cpu" in recorded["precision_note"]
    plain = engine.train(_run(), digits, tmp_path / "fp32", device="cpu", progress=False)
    assert (plain["precision"], plain["precision_requested"], plain["precision_note"]) == ("fp32", "fp32", "")
    assert summary["best_val_bits_per_dim"] == plain["best_val_bits_per_dim"]  # a no-op, bit for bit


def test_bf16_autocast_training_loop_runs_and_records_bf16(tmp_path, digits, monkeypatch):
    """The CUDA code path, exercised on the CPU: make the engine believe bf16 may run here."""
    plain = engine.train(_run(), digits, tmp_path / "fp32", device="cpu", progress=False)
    monkeypatch.setattr(engine, "training_precision", lambda requested, device, model: ("bf16", ""))
    mixed = engine.train(_run(precision="bf16"), digits, tmp_path / "bf16", device="cpu", progress=False)
    assert (mixed["precision"], mixed["precision_requested"]) == ("bf16", "bf16")
    assert math.isfinite(mixed["best_val_bits_per_dim"])
    # autocast really ran (the networks rounded to bfloat16), and to bfloat16 accuracy it is the same training
    assert mixed["best_val_bits_per_dim"] != plain["best_val_bits_per_dim"]
    assert mixed["best_val_bits_per_dim"] == pytest.approx(plain["best_val_bits_per_dim"], rel=1e-2)


def test_validation_runs_in_fp32_inside_an_autocast_region(digits):
    torch.manual_seed(0)
    model = build_model("realnvp", digits.example_shape, digits.levels, {"hidden_channels": 4, "res_blocks": 1})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x_val = torch.as_tensor(digits.val[:64], dtype=torch.float32)
    reference = engine._validation_bpd(model, x_val, digits.levels, seed=0, batch=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = engine._validation_bpd(model, x_val, digits.levels, seed=0, batch=32)
    assert inside == reference


def test_training_precision_choices(monkeypatch):
    realnvp = build_model("realnvp", (2,), None, {})
    ffjord = build_model("ffjord", (2,), None, {"hidden": 8, "layers": 1})
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert engine.training_precision("fp32", cpu, realnvp) == ("fp32", "")
    assert engine.training_precision("bf16", cpu, realnvp)[0] == "fp32"
    used, note = engine.training_precision("bf16", cuda, ffjord)
    assert used == "fp32" and "FFJORD" in note
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert engine.training_precision("bf16", cuda, realnvp) == ("bf16", "")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    used, note = engine.training_precision("bf16", cuda, realnvp)
    assert used == "fp32" and "V100" in note
    with pytest.raises(ValueError, match="training.precision is 'fp16'"):
        engine.training_precision("fp16", cpu, realnvp)
