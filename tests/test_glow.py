"""Glow and its parts against brute force: autograd Jacobians, slogdet, grid integrals, a known Gaussian."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import hessian

from brute_force import dequantised_levels, jacobian_logdet, randomise
from vaeflow.models.actnorm import ActNorm
from vaeflow.models.distributions import diagonal_normal_log_prob, standard_normal_log_prob
from vaeflow.models.glow import Glow, GlowCoupling, LevelRescale
from vaeflow.models.invertible_conv import InvertibleConv1x1

F64 = torch.float64


def whitened_normal(n: int, dim: int, seed: int = 0) -> Tensor:
    """Standard-normal draws made exactly zero-mean with identity (1/n) second moment."""
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)
    x = x - x.mean(0)
    chol = torch.linalg.cholesky(x.T @ x / n)
    return torch.linalg.solve_triangular(chol, x.T, upper=False).T


# --- ActNorm ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 3, 5, 4), (256, 5)])
def test_actnorm_initialize_standardises_and_persists(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(0)
    channels = shape[1]
    view = (1, channels) + (1,) * (len(shape) - 2)
    loc = torch.linspace(-3.0, 5.0, channels, dtype=F64).view(view)
    spread = torch.linspace(0.1, 4.0, channels, dtype=F64).view(view)
    x = loc + spread * torch.randn(shape, generator=generator, dtype=F64)
    norm = ActNorm(channels).to(F64)
    assert not norm.initialized and torch.equal(norm(x)[0], x)  # identity before init
    norm.initialize(x)
    assert norm.initialized.dtype == torch.bool and bool(norm.initialized)
    y, logdet = norm(x)
    dims = [0] + list(range(2, len(shape)))
    torch.testing.assert_close(y.mean(dims), torch.zeros(channels, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        y.std(dims, unbiased=False), torch.ones(channels, dtype=F64), atol=1e-4, rtol=0
    )  # ε = 1e-6 in 1/(std + ε)
    # log-det per example = H·W·Σ log s, and the inverse recovers x
    positions = math.prod(shape[2:])
    torch.testing.assert_close(logdet, torch.full((shape[0],), positions * norm.log_scale.sum().item(), dtype=F64))
    torch.testing.assert_close(norm.inverse(y), x, atol=1e-12, rtol=0)
    brute = jacobian_logdet(lambda v: norm(v)[0], x[:1])
    assert logdet[0].item() == pytest.approx(brute.item(), abs=1e-9)
    # a second initialize (another batch) changes nothing
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    norm.initialize(3.0 * x + 7.0)
    assert all(torch.equal(before[k], v) for k, v in norm.state_dict().items())
    # the state (including `initialized`) survives a save/load round trip, and blocks re-init there too
    buffer = io.BytesIO()
    torch.save(norm.state_dict(), buffer)
    buffer.seek(0)
    loaded = ActNorm(channels).to(F64)
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    assert bool(loaded.initialized)
    loaded.initialize(x + 1.0)
    torch.testing.assert_close(loaded(x)[0], y, atol=0, rtol=0)


def test_actnorm_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"ActNorm\(3\) expects .*got \(2, 4\)"):
        ActNorm(3)(torch.zeros(2, 4))


# --- invertible 1x1 convolution --------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 4, 12])
def test_invertible_conv_lu_weight_logdet_and_inverse(channels: int) -> None:
    torch.manual_seed(channels)
    conv = InvertibleConv1x1(channels).to(F64)
    eye = torch.eye(channels, dtype=F64)
    w0 = conv.weight()
    torch.testing.assert_close(w0 @ w0.T, eye, atol=1e-6, rtol=0)  # a rotation (factors stored in float32)
    randomise(conv, std=0.3)
    w = conv.weight()
    sign, logabs = torch.linalg.slogdet(w)
    assert sign != 0 and torch.isfinite(logabs)
    torch.testing.assert_close(conv.inverse_weight() @ w, eye, atol=1e-10, rtol=0)
    torch.testing.assert_close(logabs, conv.log_abs_s.sum(), atol=1e-10, rtol=0)
    # images: log-det H·W·log|det W|, checked against the full Jacobian too
    x = torch.randn(3, channels, 3, 2, dtype=F64)
    y, logdet = conv(x)
    torch.testing.assert_close(logdet, torch.full((3,), 6 * logabs.item(), dtype=F64))
    torch.testing.assert_close(y, torch.einsum("ck,bkhw->bchw", w, x))
    assert logdet[0].item() == pytest.approx(jacobian_logdet(lambda v: conv(v)[0], x[:1]).item(), abs=1e-9)
    torch.testing.assert_close(conv.inverse(y), x, atol=1e-10, rtol=0)
    # vectors: the linear map y = W x with log-det log|det W|
    v = torch.randn(5, channels, dtype=F64)
    yv, logdet_v = conv(v)
    torch.testing.assert_close(yv, v @ w.T)
    torch.testing.assert_close(logdet_v, torch.full((5,), logabs.item(), dtype=F64))
    torch.testing.assert_close(conv.inverse(yv), v, atol=1e-10, rtol=0)


def test_invertible_conv_permutation_travels_with_state_dict() -> None:
    torch.manual_seed(0)
    a = InvertibleConv1x1(6)
    torch.manual_seed(1)
    b = InvertibleConv1x1(6)
    assert not torch.equal(a.weight(), b.weight())
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.weight(), a.weight(), atol=0, rtol=0)


# --- Glow: inverse and log-det against brute force -------------------------------------------


def _glow_cases() -> list[tuple[str, Glow, Tensor]]:
    cases = []
    specs = [
        ("image-4x4", (1, 4, 4), 17, {"hidden_channels": 8, "steps": 2, "n_levels": 2}),
        ("image-4x4-logit", (1, 4, 4), 17, {"hidden_channels": 8, "steps": 2, "n_levels": 2, "logit_alpha": 0.05}),
        ("image-2x4x4-1level", (2, 4, 4), 256, {"hidden_channels": 8, "steps": 2, "n_levels": 1}),
        ("vector-2", (2,), None, {"hidden": 16, "vector_steps": 4}),
        ("vector-3", (3,), None, {"hidden": 16, "vector_steps": 3}),
        ("vector-6", (6,), None, {"hidden": 16, "vector_steps": 4}),
    ]
    for i, (name, shape, levels, options) in enumerate(specs):
        torch.manual_seed(i)
        model = Glow(shape, levels, **options).to(F64)
        if levels is None:
            x = 2.0 * torch.randn(5, *shape, generator=torch.Generator().manual_seed(i), dtype=F64) + 1.0
        else:
            x = dequantised_levels((5, *shape), levels, seed=i)
        model.initialize(x)
        randomise(model, std=0.1, seed=i)
        cases.append((name, model, x))
    return cases


@pytest.mark.parametrize("case", _glow_cases(), ids=lambda c: c[0])
def test_glow_inverse_and_log_prob_against_jacobian(case: tuple[str, Glow, Tensor]) -> None:
    name, model, y = case
    batch, dim = y.shape[0], model.num_dims
    eps, logdet = model.forward_and_logdet(y)
    assert eps.shape == (batch, dim) and logdet.shape == (batch,)
    # inverse(forward(y)) == y, in both parameterisations of z
    assert ((model.inverse(eps) - y).abs().max() / y.abs().max()) < 1e-10
    z_raw, logdet_raw = model.forward_and_logdet(y, standardize=False)
    assert ((model.inverse(z_raw, standardized=False) - y).abs().max() / y.abs().max()) < 1e-10
    log_p = model.log_prob(y)
    torch.testing.assert_close(model.log_prob_bound(y, 100), log_p)
    pieces, means, log_stds, _ = model.encode(y)
    if name.startswith("image") and len(pieces) > 1:
        assert means[0].abs().mean() > 1e-2 and log_stds[0].abs().mean() > 1e-2, "split prior should be non-trivial"
    for i in range(batch):
        one = y[i : i + 1]
        # raw pieces: Σ log N(z_i; μ_i, σ_i) + log|det ∂z/∂y| with the full autograd Jacobian
        raw_jac = jacobian_logdet(lambda v: model.forward_and_logdet(v, standardize=False)[0], one)
        prior = sum(
            diagonal_normal_log_prob(p[i : i + 1], m[i : i + 1], s[i : i + 1])
            for p, m, s in zip(pieces, means, log_stds)
        )
        assert log_p[i].item() == pytest.approx((prior + raw_jac).item(), abs=1e-7)
        assert logdet_raw[i].item() == pytest.approx(raw_jac.item(), abs=1e-7)
        # standardised pieces: log N(ε; 0, I) + log|det ∂ε/∂y| (the priors' dependence on h included)
        eps_jac = jacobian_logdet(lambda v: model.forward_and_logdet(v)[0], one)
        assert log_p[i].item() == pytest.approx((standard_normal_log_prob(eps[i : i + 1]) + eps_jac).item(), abs=1e-7)


def test_glow_image_log_det_holds_the_rescaling_term() -> None:
    """With every layer the identity except the fixed parts, log p is Glow's y/K - ½ plus couplings' sigmoid(2)."""
    levels = 256
    torch.manual_seed(0)
    model = Glow((1, 4, 4), levels, hidden_channels=4, steps=1, n_levels=1).to(F64)
    with torch.no_grad():
        conv = model.flow_levels[0].transforms[1].transforms[1]
        conv.lower.zero_()
        conv.upper.zero_()
        conv.log_abs_s.zero_()
        conv.permutation.copy_(torch.eye(4, dtype=F64))
        conv.sign_s.fill_(1.0)
    y = dequantised_levels((3, 1, 4, 4), levels)
    u = (y / levels - 0.5).reshape(3, 1, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(3, 4, 4)  # squeezed
    a = torch.sigmoid(torch.tensor(2.0, dtype=F64))
    z = torch.cat([u[:, :2], a * u[:, 2:]], dim=1)
    by_hand = standard_normal_log_prob(z) - 16 * math.log(levels) + 8 * torch.log(a)
    torch.testing.assert_close(model.log_prob(y), by_hand)
    torch.testing.assert_close(LevelRescale(levels)(y)[1], torch.full((3,), -16 * math.log(levels), dtype=F64))


# --- Glow: normalisation and a known answer --------------------------------------------------


@pytest.mark.parametrize("dim", [2, 6])
def test_fresh_vector_glow_initialised_on_standard_normal_is_nearly_standard_normal(dim: int) -> None:
    """Known answer. A fresh vector Glow is linear: rotations (the LU convs start orthogonal), couplings
    that multiply the second ⌊D/2⌋ coordinates by a = sigmoid(2) ≈ 0.881 (zero-initialised nets), and
    actnorms. Initialised on data with mean exactly 0 and second moment exactly I, each actnorm undoes
    the contraction of the coupling before it, so the model is z = diag(1, a)·Q·x with Q orthogonal:

        log p(x) = log N(x; 0, I) + k·log a + ½·xᵀ(I - QᵀD²Q)x,   k = ⌊D/2⌋, D² = diag(1, a²),

    i.e. log p(0) = -D/2·log 2π + k·log a; the Hessian of log p has eigenvalues {-1, -a²};
    per point the gap to the standard normal lies in [k·log a, k·log a + ½(1-a²)|x|²]; and its mean
    over the initialisation data is exactly k·(log a + (1-a²)/2) ≈ -0.0148·k nats. The only deviation
    is actnorm's ε = 1e-6 in 1/(std + ε), a relative error ≤ 1e-6 per actnorm: with 6 steps that is
    ≲ 1e-5·(D + |x|²) nats, hence the tolerances of 1e-4.
    """
    k = dim // 2
    a = torch.sigmoid(torch.tensor(2.0, dtype=F64))
    torch.manual_seed(dim)
    model = Glow((dim,), None).to(F64)
    data = whitened_normal(4096, dim, seed=dim)
    model.initialize(data)
    with torch.no_grad():
        log_p = model.log_prob(data)
    log_n = standard_normal_log_prob(data)
    gap = log_p - log_n
    sq = data.square().sum(1)
    assert (gap >= k * torch.log(a) - 1e-4).all()
    assert (gap <= k * torch.log(a) + 0.5 * (1 - a**2) * sq + 1e-4).all()
    assert gap.mean().item() == pytest.approx((k * (torch.log(a) + 0.5 * (1 - a**2))).item(), abs=1e-4)
    origin = torch.zeros(1, dim, dtype=F64)
    assert model.log_prob(origin).item() == pytest.approx(
        -0.5 * dim * math.log(2 * math.pi) + k * math.log(a), abs=1e-4
    )
    curvature = hessian(lambda v: model.log_prob(v.view(1, dim)).sum(), data[0])
    eigenvalues = torch.linalg.eigvalsh(curvature)
    expected = torch.cat([-torch.ones(dim - k, dtype=F64), -(a**2).expand(k)]).sort().values
    torch.testing.assert_close(eigenvalues, expected, atol=1e-4, rtol=0)


# --- Glow: data-dependent init, checkpoints ---------------------------------------------------


def test_glow_initialize_normalises_every_actnorm_in_order() -> None:
    torch.manual_seed(0)
    model = Glow((1, 8, 8), 17, hidden_channels=8, steps=2, n_levels=3).to(F64)
    randomise(model, std=0.2)  # couplings no longer fixed contractions, so later actnorms have work to do
    x = dequantised_levels((64, 1, 8, 8), 17)
    norms = [m for m in model.modules() if isinstance(m, ActNorm)]
    assert len(norms) == 6 and not any(bool(n.initialized) for n in norms)
    model.initialize(x)
    assert all(bool(n.initialized) for n in norms)
    outputs: list[Tensor] = []
    handles = [n.register_forward_hook(lambda mod, args, out: outputs.append(out[0])) for n in norms]
    model.log_prob(x)
    for h in handles:
        h.remove()
    for out in outputs:  # each actnorm's output on the init batch is standardised per channel
        torch.testing.assert_close(out.mean((0, 2, 3)), torch.zeros(out.shape[1], dtype=F64), atol=1e-10, rtol=0)
        torch.testing.assert_close(
            out.std((0, 2, 3), unbiased=False), torch.ones(out.shape[1], dtype=F64), atol=1e-4, rtol=0
        )
    # a second call, or a copy loaded from a checkpoint, keeps the parameters
    before = model.log_prob(x)
    model.initialize(x * 0.5 + 3.0)
    torch.testing.assert_close(model.log_prob(x), before, atol=0, rtol=0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)  # different random rotations, overwritten by the checkpoint
    loaded = Glow((1, 8, 8), 17, hidden_channels=8, steps=2, n_levels=3).to(F64)
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    loaded.initialize(x + 1.0)
    torch.testing.assert_close(loaded.log_prob(x), before, atol=1e-12, rtol=0)


# --- Glow: options, extreme inputs, samples ---------------------------------------------------


def test_glow_rejects_levels_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match=r"n_levels=2 does not fit data_shape \(1, 14, 14\).*n_levels <= 1"):
        Glow((1, 14, 14), 256, n_levels=2)
    with pytest.raises(ValueError, match=r"n_levels=4 .*\(1, 8, 8\).*n_levels <= 3"):
        Glow((1, 8, 8), 17, n_levels=4)
    with pytest.raises(ValueError, match=r"n_levels=5 .*n_levels <= 4"):
        Glow((1, 16, 16), 256, n_levels=5)
    with pytest.raises(ValueError, match=r"n_levels=1 .*\(1, 7, 7\).*even height and width"):
        Glow((1, 7, 7), 256, n_levels=1)
    with pytest.raises(ValueError, match=r"'steps' must be a positive integer, got 0"):
        Glow((1, 8, 8), 17, steps=0)
    with pytest.raises(ValueError, match=r"'vector_steps' must be a positive integer"):
        Glow((2,), None, vector_steps=0)
    with pytest.raises(ValueError, match=r"at least 2 dimensions"):
        Glow((1,), None)
    with pytest.raises(ValueError, match="alpha must lie in"):
        Glow((1, 8, 8), 17, logit_alpha=0.7)
    Glow((1, 14, 14), 256, n_levels=1, hidden_channels=4)
    Glow((1, 16, 16), 256, n_levels=4, hidden_channels=4, steps=1)
    Glow((1, 8, 8), 17, n_levels=3, hidden_channels=4, steps=1)


@pytest.mark.parametrize("logit_alpha", [None, 0.05])
@pytest.mark.parametrize(("shape", "levels", "n_levels"), [((1, 8, 8), 17, 2), ((1, 14, 14), 256, 1)])
def test_glow_extreme_images_finite_and_gradients_flow(
    shape: tuple[int, ...], levels: int, n_levels: int, logit_alpha: float | None
) -> None:
    torch.manual_seed(0)
    model = Glow(shape, levels, n_levels=n_levels, logit_alpha=logit_alpha, hidden_channels=8, steps=2)
    zeros = torch.zeros(2, *shape)
    tops = torch.full((2, *shape), levels - 1.0)
    model.initialize(torch.cat([zeros, tops]) + torch.rand(4, *shape))
    for x in (zeros, tops):
        inputs = torch.cat([x, x + torch.rand_like(x) * 0.999])  # the exact edges 0 and K - 1 + u included
        assert torch.isfinite(model.log_prob(inputs)).all()
        assert torch.isfinite(model.log_prob_bound(inputs, 3)).all()
        model.zero_grad()
        loss = model.loss(inputs)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    ("shape", "levels", "options"),
    [
        ((1, 8, 8), 17, {"hidden_channels": 8}),
        ((1, 16, 16), 256, {"hidden_channels": 8, "n_levels": 3}),
        ((2,), None, {"hidden": 16}),
    ],
)
def test_glow_samples_shape_and_range(shape: tuple[int, ...], levels: int | None, options: dict) -> None:
    torch.manual_seed(0)
    model = randomise(Glow(shape, levels, **options), std=0.05)
    for temperature in (1.0, 0.5, 0.0):
        samples = model.sample(7, temperature=temperature)
        assert samples.shape == (7, *shape) and samples.dtype == torch.float32
        assert torch.isfinite(samples).all()
        if levels is not None:
            assert torch.equal(samples, samples.floor())
            assert samples.min() >= 0 and samples.max() <= levels - 1
    if levels is None:  # temperature 0: every prior at its mean, so the draws coincide
        zero = model.sample(3, temperature=0.0)
        torch.testing.assert_close(zero, zero[:1].expand(3, -1), atol=0, rtol=0)


def test_glow_coupling_starts_as_sigmoid_two_contraction() -> None:
    coupling = GlowCoupling(4, nn.Sequential(nn.Conv2d(2, 4, 1)))
    nn.init.zeros_(coupling.net[0].weight)
    nn.init.zeros_(coupling.net[0].bias)
    x = torch.randn(3, 4, 2, 2, dtype=torch.float32)
    y, logdet = coupling(x)
    a = torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(y, torch.cat([x[:, :2], a * x[:, 2:]], 1))
    torch.testing.assert_close(logdet, torch.full((3,), 8 * torch.log(a).item()))
