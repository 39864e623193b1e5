"""MAF and IAF against brute force: autograd Jacobians, grid integrals, the two IAF code paths."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor

from brute_force import dequantised_levels, jacobian_logdet, randomise
from vaeflow.models.distributions import standard_normal_log_prob
from vaeflow.models.iaf import IAF, InverseAutoregressiveAffine
from vaeflow.models.maf import MAF, AutoregressiveFlow, BatchNormBijection, MaskedAffineAutoregressive
from vaeflow.models.transforms import LogitPreprocess

F64 = torch.float64


def fit_batch_norm(model: AutoregressiveFlow, x: Tensor, steps: int = 5) -> None:
    """Give the batch norms non-trivial running statistics (train-mode passes), then switch to eval."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model.forward_and_logdet(x)
    model.eval()


def build(kind: str, data_shape: tuple[int, ...], levels: int | None, seed: int = 0, **options) -> AutoregressiveFlow:
    """A small randomised float64 flow: ``maf``, ``maf-bn`` (eval mode), ``maf-random`` or ``iaf``."""
    torch.manual_seed(seed)
    options = {"blocks": 3, "hidden": 16, **options}
    if kind == "maf":
        model: AutoregressiveFlow = MAF(data_shape, levels, **options)
    elif kind == "maf-random":
        model = MAF(data_shape, levels, order="random", **options)
    elif kind == "maf-bn":
        model = MAF(data_shape, levels, batch_norm=True, **options)
    else:
        model = IAF(data_shape, levels, **options)
    model = randomise(model.to(F64), std=0.1, seed=seed)
    if kind == "maf-bn":
        generator = torch.Generator().manual_seed(seed + 1)
        x = (
            dequantised_levels((64, *data_shape), levels, seed + 1)
            if levels
            else 1.5 * torch.randn(64, *data_shape, generator=generator, dtype=F64) + 0.3
        )
        fit_batch_norm(model, x)
    return model.eval()


KINDS = ["maf", "maf-random", "maf-bn", "iaf"]
CASES = [((6,), None), ((1, 4, 4), 17)]


def _inputs(data_shape: tuple[int, ...], levels: int | None, n: int = 3, dtype: torch.dtype = F64) -> Tensor:
    if levels is not None:
        return dequantised_levels((n, *data_shape), levels, dtype=dtype)
    return 1.5 * torch.randn(n, *data_shape, generator=torch.Generator().manual_seed(5), dtype=dtype)


# --- invertibility and log-determinants ------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=["vector6", "image1x4x4"])
@pytest.mark.parametrize("kind", KINDS)
def test_inverse_and_jacobian_logdet(kind: str, case: tuple[tuple[int, ...], int | None]) -> None:
    data_shape, levels = case
    model = build(kind, data_shape, levels)
    y = _inputs(data_shape, levels)
    z, logdet = model.forward_and_logdet(y)
    assert z.shape == (3, math.prod(data_shape)) and logdet.shape == (3,)
    # randomised: the autoregressive part is far from the identity (beyond the preprocessing)
    h = y.reshape(3, -1) if levels is None else LogitPreprocess(levels, 0.05)(y)[0].reshape(3, -1)
    assert (z - h).abs().max() > 1e-2
    y_back = model.inverse(z)
    assert ((y_back - y).abs().max() / y.abs().max()) < 1e-8
    for i in range(y.shape[0]):
        brute = jacobian_logdet(lambda v: model.forward_and_logdet(v)[0], y[i : i + 1])
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-6)
    torch.testing.assert_close(model.log_prob(y), standard_normal_log_prob(z) + logdet)
    torch.testing.assert_close(model.log_prob_bound(y, 100), model.log_prob(y))


@pytest.mark.parametrize("kind", ["maf", "iaf"])
def test_float32_round_trip(kind: str) -> None:
    model = build(kind, (1, 4, 4), 17).float()
    y = _inputs((1, 4, 4), 17, n=8, dtype=torch.float32)
    with torch.no_grad():
        z, _ = model.forward_and_logdet(y)
        assert ((model.inverse(z) - y).abs().max() / y.abs().max()) < 1e-4


@pytest.mark.parametrize("step_class", [MaskedAffineAutoregressive, InverseAutoregressiveAffine])
def test_one_step_equations_and_pass_counts(step_class: type[MaskedAffineAutoregressive]) -> None:
    """The steps compute the paper's equations; forward is one MADE pass, the inverse D passes."""
    torch.manual_seed(0)
    step = randomise(step_class(5, hidden=12, order=torch.tensor([2, 0, 4, 1, 3])).to(F64), std=0.2)
    v = torch.randn(4, 5, dtype=F64)
    mu, alpha = step.conditioner(v)
    assert alpha.abs().max() < step.max_log_scale
    w, logdet = step(v)
    if step_class is MaskedAffineAutoregressive:  # MAF eqs. 3-4: u = (x - μ)·exp(-α), log-det -Σα
        torch.testing.assert_close(w, (v - mu) * torch.exp(-alpha))
        torch.testing.assert_close(logdet, -alpha.sum(1))
    else:  # IAF: x = z·exp(α) + μ, log-det +Σα
        torch.testing.assert_close(w, v * torch.exp(alpha) + mu)
        torch.testing.assert_close(logdet, alpha.sum(1))
    calls = []
    handle = step.made.register_forward_hook(lambda *args: calls.append(1))
    step(v)
    assert len(calls) == 1
    calls.clear()
    v_back, inverse_logdet = step.inverse_and_logdet(w)
    handle.remove()
    assert len(calls) == 5
    torch.testing.assert_close(v_back, v, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(inverse_logdet, -logdet)


@pytest.mark.parametrize("step_class", [MaskedAffineAutoregressive, InverseAutoregressiveAffine])
def test_narrow_made_inverts_exactly_in_fewer_passes(step_class: type[MaskedAffineAutoregressive]) -> None:
    """A MADE narrower than D − 1 reads its inputs in groups: the inverse is exact after the
    dependency chain's length in passes (here 5 of 40), and one pass fewer is not."""
    torch.manual_seed(0)
    step = randomise(step_class(40, hidden=4, order=torch.randperm(40)).to(F64), std=0.3)
    with torch.no_grad():  # every hidden unit active, so each structural dependency is a real one
        for layer in step.made.hidden_layers:
            layer.bias.add_(3.0)
    assert step.made.inversion_passes == 5
    v = torch.randn(6, 40, dtype=F64)
    w, logdet = step(v)
    v_back, inverse_logdet = step.inverse_and_logdet(w)
    torch.testing.assert_close(v_back, v, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(inverse_logdet, -logdet)
    step.made.inversion_passes -= 1
    assert not torch.allclose(step.inverse_and_logdet(w)[0], v, rtol=1e-6, atol=1e-6)


def test_iaf_sample_log_prob_matches_sequential_inversion() -> None:
    """Two code paths: one pass per block (sampling) and D passes per block (density)."""
    for data_shape, levels in CASES:
        model = build("iaf", data_shape, levels, seed=3)
        torch.manual_seed(1)
        y, log_q = model.sample_with_log_prob(16)
        assert y.shape == (16, *data_shape)
        torch.testing.assert_close(model.log_prob(y), log_q, rtol=1e-9, atol=1e-8)
        if levels is not None:  # continuous samples in dequantised level units, not rounded
            assert not torch.equal(y, y.round())


def test_iaf_log_prob_gradients_are_exact() -> None:
    """ML training differentiates through the unrolled sequential inversion: check by finite differences."""
    model = build("iaf", (4,), None, seed=2, hidden=8)
    y = _inputs((4,), None, n=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: model.log_prob(v), (y,))
    # a directional derivative in parameter space
    params = list(model.parameters())
    generator = torch.Generator().manual_seed(0)
    direction = [torch.randn(p.shape, generator=generator, dtype=F64) for p in params]
    y = y.detach()
    grads = torch.autograd.grad(model.log_prob(y).sum(), params)
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    eps = 1e-6
    values = []
    for sign in (1.0, -1.0):
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            for p, d in zip(shifted.parameters(), direction):
                p.add_(sign * eps * d)
            values.append(shifted.log_prob(y).sum())
    numeric = (values[0] - values[1]) / (2 * eps)
    assert analytic.item() == pytest.approx(numeric.item(), rel=1e-6, abs=1e-8)


# --- batch normalisation ---------------------------------------------------------------------


def test_batch_norm_bijection_modes() -> None:
    torch.manual_seed(0)
    bn = randomise(BatchNormBijection(3).to(F64), std=0.3)
    x = torch.randn(256, 3, dtype=F64) * torch.tensor([0.5, 2.0, 4.0], dtype=F64) + torch.tensor(
        [1.0, -2.0, 0.0], dtype=F64
    )
    u, logdet = bn(x)  # training mode: batch statistics
    torch.testing.assert_close(u.mean(0), bn.beta.detach())
    torch.testing.assert_close(u.std(0, unbiased=False), bn.log_gamma.detach().exp(), rtol=1e-4, atol=0)
    expected = (bn.log_gamma - 0.5 * torch.log(x.var(0, unbiased=False) + bn.eps)).sum()
    torch.testing.assert_close(logdet, expected.expand(256))
    torch.testing.assert_close(bn.running_mean, 0.1 * x.mean(0))
    for _ in range(200):
        bn(x)
    torch.testing.assert_close(bn.running_mean, x.mean(0))
    bn.eval()  # eval mode: a fixed map with the running statistics, inverted exactly
    u, logdet = bn(x[:2])
    torch.testing.assert_close(bn.inverse(u), x[:2])
    brute = jacobian_logdet(lambda v: bn(v)[0], x[:1])
    assert logdet[0].item() == pytest.approx(brute.item(), abs=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        bn.train()(x[:1])


# --- densities -------------------------------------------------------------------------------


def test_batch_norm_maf_toy_density_integrates_to_one() -> None:
    """With batch normalisation between blocks (eval mode); the default MAF and IAF are checked by
    tests/test_model_contract.py."""
    model = build("maf-bn", (2,), None, seed=4, blocks=4, hidden=32)
    half_width, n = 10.0, 400
    edges = torch.linspace(-half_width, half_width, n + 1, dtype=F64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    cell = (2 * half_width / n) ** 2
    grid = torch.cartesian_prod(centres, centres)
    with torch.no_grad():
        density = model.log_prob(grid).exp()
    assert (density.sum() * cell).item() == pytest.approx(1.0, abs=0.02)
    # and it is far from the base density, so the check is not trivial
    base = (-0.5 * grid.square().sum(1) - math.log(2 * math.pi)).exp()
    assert 0.5 * ((density - base).abs().sum() * cell).item() > 0.1


@pytest.mark.parametrize("cls", [MAF, IAF])
def test_fresh_flows_are_the_identity(cls: type[AutoregressiveFlow]) -> None:
    """Zero-initialised MADE outputs: the standard normal on vectors, pure logit preprocessing on images."""
    for dim in (2, 6):
        model = cls((dim,), None).to(F64)
        x = torch.randn(50, dim, dtype=F64)
        torch.testing.assert_close(model.log_prob(x), -0.5 * x.square().sum(1) - 0.5 * dim * math.log(2 * math.pi))
    model = cls((1, 4, 4), 17, hidden=16).to(F64)
    y = dequantised_levels((5, 1, 4, 4), 17)
    h, pre_logdet = LogitPreprocess(17, 0.05)(y)
    torch.testing.assert_close(model.log_prob(y), standard_normal_log_prob(h) + pre_logdet)


def test_random_order_is_reproducible_and_reverse_alternates() -> None:
    a, b = MAF((6,), None, order="random"), MAF((6,), None, order="random")
    for step_a, step_b in zip(a.flow.transforms, b.flow.transforms):
        assert torch.equal(step_a.made.degrees_in, step_b.made.degrees_in)
    assert not torch.equal(a.flow.transforms[0].made.degrees_in, a.flow.transforms[1].made.degrees_in)
    degrees = [s.made.degrees_in for s in IAF((6,), None, blocks=3).steps]
    assert torch.equal(degrees[0], torch.arange(1, 7)) and torch.equal(degrees[1], torch.arange(6, 0, -1))
    assert torch.equal(degrees[2], degrees[0])


# --- distillation ----------------------------------------------------------------------------


def test_distillation_is_zero_for_equal_densities() -> None:
    # both identity-initialised: the same standard normal
    student, teacher = IAF((2,), None).to(F64), MAF((2,), None).to(F64).eval().requires_grad_(False)
    torch.manual_seed(0)
    assert student.distillation_loss(teacher, 256).abs().item() < 1e-12
    # a randomised IAF against a frozen copy of itself: the density through the other code path
    student = build("iaf", (1, 4, 4), 17, seed=6)
    teacher = copy.deepcopy(student).requires_grad_(False)
    torch.manual_seed(0)
    assert student.distillation_loss(teacher, 64).abs().item() < 1e-8


def test_distillation_estimate_is_nonnegative_and_trains_the_student() -> None:
    teacher = build("maf", (2,), None, seed=7, blocks=3, hidden=32).requires_grad_(False)
    torch.manual_seed(0)
    student = IAF((2,), None, blocks=3, hidden=32).to(F64)

    def kl_estimate(n: int = 4096) -> tuple[float, float]:
        torch.manual_seed(123)
        with torch.no_grad():
            y, log_q = student.sample_with_log_prob(n)
            terms = log_q - teacher.log_prob(y)
        return terms.mean().item(), terms.std().item() / math.sqrt(n)

    before, error = kl_estimate()
    assert before + 4 * error >= 0 and before > 0.05  # the fresh student (N(0, I)) differs from the teacher
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    torch.manual_seed(1)
    for _ in range(40):
        optimizer.zero_grad()
        loss = student.distillation_loss(teacher, 128)
        loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())
    after, error = kl_estimate()
    assert after + 4 * error >= 0
    assert after < 0.5 * before


def test_distillation_refuses_a_mismatched_teacher() -> None:
    student = IAF((2,), None, hidden=8)
    with pytest.raises(ValueError, match="same dataset"):
        student.distillation_loss(MAF((3,), None, hidden=8), 4)

    class Discrete(MAF):
        discrete = True

    with pytest.raises(ValueError, match="discrete"):
        student.distillation_loss(Discrete((2,), None, hidden=8), 4)


# --- images: extreme inputs, samples, errors -------------------------------------------------


@pytest.mark.parametrize("levels", [17, 256])
@pytest.mark.parametrize("cls", [MAF, IAF])
def test_extreme_images_and_samples(cls: type[AutoregressiveFlow], levels: int) -> None:
    torch.manual_seed(0)
    model = randomise(cls((1, 4, 4), levels, blocks=2, hidden=16), std=0.1)
    extremes = torch.stack(
        [torch.zeros(1, 4, 4), torch.full((1, 4, 4), levels - 1.0), torch.full((1, 4, 4), levels - 1e-4)]
    )
    log_p = model.log_prob(extremes)
    assert torch.isfinite(log_p).all()
    model.loss(extremes).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    for temperature in (1.0, 3.0):
        samples = model.sample(64, temperature)
        assert samples.shape == (64, 1, 4, 4) and samples.dtype == torch.float32
        assert torch.equal(samples, samples.round()) and samples.min() >= 0 and samples.max() <= levels - 1
    assert model.sample(64, 3.0).unique().numel() > 2


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="'order' must be one of"):
        MAF((2,), None, order="forward")
    with pytest.raises(ValueError, match="'blocks' must be a positive integer"):
        IAF((2,), None, blocks=0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        MAF((1,), None)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        IAF((4, 4), 17)
    with pytest.raises(ValueError, match="expects inputs of shape"):
        MAF((1, 4, 4), 17, hidden=8).log_prob(torch.zeros(2, 16))
    maf, iaf = MAF((2,), None), IAF((2,), None)
    assert maf.exact and iaf.exact and not maf.discrete and not iaf.discrete
