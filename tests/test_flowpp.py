"""Flow++ against brute force: autograd Jacobians, bisection round trips, grid integrals, sums over levels."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from brute_force import dequantised_levels, jacobian_logdet, randomise
from vaeflow.models.distributions import standard_normal_log_prob
from vaeflow.models.flowpp import FlowPP
from vaeflow.models.mixture_coupling import (
    MixtureCDFCoupling,
    channel_mixture_coupling,
    checkerboard_mixture_coupling,
    mixture_logit_cdf,
    vector_mixture_coupling,
)

F64 = torch.float64


def make_identity(module: nn.Module) -> nn.Module:
    """Zero every mixture coupling's output layer: identical components at μ = 0, s = 1, the identity map."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, MixtureCDFCoupling):
                nn.init.zeros_(m.output_layer.weight)
                nn.init.zeros_(m.output_layer.bias)
    return module


def relative_error(a: Tensor, b: Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def toy_model(
    levels: int = 4, seed: int = 0, flow_std: float = 0.1, dequant_std: float = 0.2, **options: object
) -> FlowPP:
    """A 2-pixel "image" (1x1x2): small enough for grid integrals over all of ``[0, K)^2``.

    Random perturbations of the size used here make both flows clearly non-trivial yet well
    conditioned; much larger ones give mixtures whose CDF is flat to machine precision between
    far-apart narrow components, which no root finder can invert (a trained model avoids them:
    a flat map has a very negative log-det)."""
    torch.manual_seed(seed)
    settings = {"hidden_channels": 8, "components": 3, "steps": 2, "n_scales": 1, "dequant_steps": 2, **options}
    model = FlowPP((1, 1, 2), levels, **settings).to(F64)  # type: ignore[arg-type]
    assert model.dequantizer is not None
    main = [p for name, p in model.named_parameters() if not name.startswith("dequantizer.")]
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in main:
            p.add_(flow_std * torch.randn(p.shape, generator=generator, dtype=F64))
    randomise(model.dequantizer, dequant_std, seed + 2)
    return model


def grid_flow_masses(model: FlowPP, per_unit: int = 50) -> Tensor:
    """``P(x) = ∫_{[0,1)^2} p(x + u) du`` for every ``x ∈ {0..K-1}^2`` by the midpoint rule, shape ``(K, K)``."""
    levels = model.levels
    assert levels is not None
    centres = (torch.arange(levels * per_unit, dtype=F64) + 0.5) / per_unit
    grid = torch.cartesian_prod(centres, centres).reshape(-1, 1, 1, 2)
    with torch.no_grad():
        density = model.flow_log_prob(grid).exp()
    return density.reshape(levels, per_unit, levels, per_unit).sum((1, 3)) / per_unit**2


# --- the mixture-CDF coupling alone ---------------------------------------------------------


def _coupling_cases() -> list[tuple[str, MixtureCDFCoupling, Tensor]]:
    # the couplings' own initialisation draws from torch's global generator: seed it here (the cases are built at
    # collection, after whatever else has drawn), without disturbing the generator for the tests that follow
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _seeded_coupling_cases()


def _seeded_coupling_cases() -> list[tuple[str, MixtureCDFCoupling, Tensor]]:
    generator = torch.Generator().manual_seed(1)
    image = 2.0 * torch.randn(3, 1, 4, 4, generator=generator, dtype=F64)
    cases = [
        ("checkerboard", checkerboard_mixture_coupling(1, 4, 4, 0, hidden=8, res_blocks=1, components=4), image),
        (
            "checkerboard-odd",
            checkerboard_mixture_coupling(2, 4, 4, 1, hidden=8, res_blocks=1, components=2),
            2.0 * torch.randn(3, 2, 4, 4, generator=generator, dtype=F64),
        ),
        (
            "channel",
            channel_mixture_coupling(4, 2, 2, 1, hidden=8, res_blocks=1, components=3),
            image.reshape(3, 4, 2, 2),
        ),
        (
            "vector-2",
            vector_mixture_coupling(2, 0, hidden=16, layers=2, components=4),
            2.0 * torch.randn(3, 2, generator=generator, dtype=F64),
        ),
        (
            "vector-6-odd",
            vector_mixture_coupling(6, 1, hidden=16, layers=2, components=4),
            2.0 * torch.randn(3, 6, generator=generator, dtype=F64),
        ),
    ]
    # conv conditioners amplify perturbations more than MLPs: smaller noise keeps the mixtures well conditioned
    return [
        (name, randomise(t.to(F64), std=0.25 if name.startswith("vector") else 0.12, seed=i), x)
        for i, (name, t, x) in enumerate(cases)
    ]


@pytest.mark.parametrize("case", _coupling_cases(), ids=lambda c: c[0])
def test_mixture_coupling_inverse_and_jacobian(case: tuple[str, MixtureCDFCoupling, Tensor]) -> None:
    _, coupling, x = case
    z, logdet = coupling(x)
    assert logdet.shape == (x.shape[0],)
    free = (1 - coupling.mask).bool().expand_as(x)
    assert torch.equal(z[~free], x[~free])  # the conditioning half passes through
    assert (z - x).abs().max() > 0.1 and logdet.abs().min() > 1e-3, "randomised coupling should not be the identity"
    assert relative_error(coupling.inverse(z), x) < 1e-9  # bisection included
    for i in range(x.shape[0]):
        brute = jacobian_logdet(lambda v: coupling(v)[0], x[i : i + 1])
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-8)


def test_mixture_logit_cdf_is_nonlinear_and_matches_finite_differences() -> None:
    # a 3-component mixture with well separated means: the map is far from affine
    log_pi = torch.log(torch.tensor([0.2, 0.5, 0.3], dtype=F64)).view(1, 3, 1)
    mu = torch.tensor([-3.0, 0.0, 4.0], dtype=F64).view(1, 3, 1)
    log_s = torch.tensor([-1.0, 0.5, -2.0], dtype=F64).view(1, 3, 1)
    x = torch.linspace(-60, 60, 2001, dtype=F64).view(1, -1)
    y, log_deriv = mixture_logit_cdf(x, log_pi, mu, log_s)
    assert torch.isfinite(y).all() and torch.isfinite(log_deriv).all()
    assert (y.diff() > 0).all()  # strictly increasing, even 60 scale units into the tails
    # σ⁻¹(F) by direct (non-log-space) evaluation where F is well inside (0, 1)
    cdf = (log_pi.exp() * torch.sigmoid((x.unsqueeze(1) - mu) / log_s.exp())).sum(1)
    inside = (cdf > 1e-8) & (cdf < 1 - 1e-8)
    torch.testing.assert_close(y[inside], torch.logit(cdf[inside]), rtol=1e-9, atol=1e-9)
    h = 1e-6
    numeric = (mixture_logit_cdf(x + h, log_pi, mu, log_s)[0] - mixture_logit_cdf(x - h, log_pi, mu, log_s)[0]) / (
        2 * h
    )
    torch.testing.assert_close(log_deriv, numeric.log(), rtol=0, atol=1e-6)
    slopes = log_deriv.exp()
    assert slopes.max() / slopes.min() > 10  # genuinely nonlinear


def test_mixture_coupling_far_tails_and_float32_round_trip() -> None:
    torch.manual_seed(0)
    coupling = randomise(vector_mixture_coupling(4, 0, hidden=16, layers=2, components=4), std=0.25)
    x = torch.tensor([[30.0, -30.0, 25.0, -40.0], [0.1, 0.2, -0.3, 0.0], [-12.0, 8.0, 15.0, -9.0]])
    z, logdet = coupling(x)
    assert torch.isfinite(z).all() and torch.isfinite(logdet).all()
    assert relative_error(coupling.inverse(z), x) < 1e-4  # float32, the training dtype


def test_fresh_mixture_coupling_is_near_identity_with_distinct_components() -> None:
    coupling = checkerboard_mixture_coupling(1, 4, 4, 0, hidden=8, res_blocks=1, components=4).to(F64)
    x = 3.0 * torch.randn(2, 1, 4, 4, dtype=F64)
    z, logdet = coupling(x)
    # the components start apart (identical ones would never separate under gradient descent) ...
    _, _, log_pi, mu, log_s = coupling._params(x * coupling.mask, None)
    torch.testing.assert_close(mu[0, :, 0, 0, 0], torch.linspace(-1, 1, 4, dtype=F64))
    assert torch.equal(log_s, torch.zeros_like(log_s)) and torch.allclose(log_pi, torch.full_like(log_pi, -math.log(4)))
    # ... so a fresh coupling is near, not at, the identity: slope in [0.879, 1], shift at most 0.27
    assert 0 < (z - x).abs().max() < 0.27
    assert (logdet < 0).all() and (logdet > 8 * math.log(0.879)).all()
    # zeroing the output layer gives the exact identity
    z, logdet = make_identity(coupling)(x)
    torch.testing.assert_close(z, x, rtol=0, atol=1e-12)
    torch.testing.assert_close(logdet, torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)


def test_fresh_components_separate_under_training() -> None:
    # from a fresh model one gradient step moves the components' means apart unequally
    torch.manual_seed(0)
    model = FlowPP((2,), None, hidden=16, coupling_layers=2)
    x = torch.randn(64, 2) * torch.tensor([2.0, 0.5]) + 1.0
    model.loss(x).backward()
    for m in model.modules():
        if isinstance(m, MixtureCDFCoupling):
            grad = m.output_layer.bias.grad.view(2 + 3 * 4, -1)[2 + 4 : 2 + 8]  # d loss / d μ-bias, per component
            assert grad.std(0).max() > 1e-4


# --- the main flow --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "levels", "n_scales"), [((1, 4, 4), 17, 1), ((1, 4, 4), 17, 2), ((2,), None, 1), ((6,), None, 1)]
)
def test_main_flow_inverse_and_jacobian(shape: tuple[int, ...], levels: int | None, n_scales: int) -> None:
    torch.manual_seed(0)
    model = FlowPP(
        shape, levels, hidden_channels=8, components=3, steps=2, n_scales=n_scales, hidden=16, coupling_layers=4
    )
    model = randomise(model.to(F64), std=0.1)
    y = dequantised_levels((3, *shape), levels) if levels else 2.0 * torch.randn(3, *shape, dtype=F64)
    z, logdet = model.forward_and_logdet(y)
    assert z.shape == (3, math.prod(shape))
    assert relative_error(model.inverse(z), y) < 1e-9
    for i in range(y.shape[0]):
        brute = jacobian_logdet(lambda v: model.forward_and_logdet(v)[0], y[i : i + 1])
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-7)
    torch.testing.assert_close(model.flow_log_prob(y), standard_normal_log_prob(z) + logdet)


def test_main_flow_float32_round_trip_on_images() -> None:
    torch.manual_seed(0)
    model = randomise(FlowPP((1, 8, 8), 17, hidden_channels=8, steps=2), std=0.1)
    y = dequantised_levels((4, 1, 8, 8), 17).float()
    z, _ = model.forward_and_logdet(y)
    assert relative_error(model.inverse(z), y) < 1e-4


def test_identity_vector_flow_gives_standard_normal_density() -> None:
    model = make_identity(FlowPP((2,), None).to(F64))
    assert model.exact is True and model.discrete is False
    x = torch.randn(100, 2, dtype=F64)
    analytic = -0.5 * x.square().sum(1) - math.log(2 * math.pi)
    torch.testing.assert_close(model.log_prob(x), analytic)
    torch.testing.assert_close(model.log_prob_bound(x, 50), analytic)


def test_identity_image_flow_is_logit_preprocess_plus_normal() -> None:
    levels, alpha = 256, 0.05
    model = make_identity(FlowPP((1, 4, 4), levels, hidden_channels=4, logit_alpha=alpha).to(F64))
    y = dequantised_levels((4, 1, 4, 4), levels)
    s = alpha + (1 - 2 * alpha) * y / levels
    z = torch.log(s / (1 - s))
    by_hand = (
        -0.5 * z.square()
        - 0.5 * math.log(2 * math.pi)
        - math.log(levels)
        + math.log(1 - 2 * alpha)
        - torch.log(s)
        - torch.log(1 - s)
    ).sum((1, 2, 3))
    torch.testing.assert_close(model.flow_log_prob(y), by_hand)


# --- the dequantiser q(u|x) -----------------------------------------------------------------


def test_dequantizer_log_q_is_the_change_of_variables() -> None:
    torch.manual_seed(0)
    model = randomise(FlowPP((1, 4, 4), 17, hidden_channels=8, components=3, steps=1).to(F64), std=0.2)
    assert model.dequantizer is not None
    x = torch.randint(0, 17, (3, 1, 4, 4)).to(F64)
    u, log_q = model.sample_and_log_q(x)
    assert u.shape == x.shape and ((u > 0) & (u < 1)).all()
    eps = torch.randn(x.shape, dtype=F64)
    u, log_q = model.dequantizer.transform(eps, x)
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        brute = standard_normal_log_prob(eps[i : i + 1]) - jacobian_logdet(
            lambda e, xi=xi: model.dequantizer.transform(e, xi)[0], eps[i : i + 1]
        )
        assert log_q[i].item() == pytest.approx(brute.item(), abs=1e-8)
    # the inverse path (bisection) gives the same log q at the same u
    torch.testing.assert_close(model.log_q(u, x), log_q, rtol=0, atol=1e-8)
    # q depends on x: other levels, other density at the same u
    assert (model.log_q(u, (x + 5).clamp(max=16)) - log_q).abs().max() > 1e-3


def test_dequantizer_density_integrates_to_one() -> None:
    model = toy_model()
    n = 120
    centres = (torch.arange(n, dtype=F64) + 0.5) / n
    u = torch.cartesian_prod(centres, centres).reshape(-1, 1, 1, 2)
    for levels in ([0.0, 3.0], [2.0, 1.0]):
        x = torch.tensor(levels, dtype=F64).view(1, 1, 1, 2).expand(len(u), -1, -1, -1)
        with torch.no_grad():
            q = model.log_q(u, x).exp()
        assert (q.sum() / n**2).item() == pytest.approx(1.0, abs=2e-3)
        assert q.max() / q.min() > 3  # not uniform: the test integrates something nontrivial


# --- bounds ---------------------------------------------------------------------------------


def test_single_draw_bound_below_importance_weighted_on_same_draws() -> None:
    model = toy_model()
    x = torch.tensor([[[[0.0, 3.0]]], [[[1.0, 2.0]]], [[[3.0, 3.0]]]], dtype=F64)
    with torch.no_grad():
        log_w = model.log_weights(x, 50, generator=torch.Generator().manual_seed(0))
    assert log_w.shape == (50, 3)
    assert (log_w.mean(0) <= torch.logsumexp(log_w, 0) - math.log(50) + 1e-12).all()
    # log_prob is one of these weights, log_prob_bound their log-mean-exp (same generator stream)
    torch.manual_seed(3)
    single = model.log_prob(x)
    torch.manual_seed(3)
    torch.testing.assert_close(single, model.log_weights(x, 1)[0])
    torch.manual_seed(3)
    bound = model.log_prob_bound(x, 7)
    torch.manual_seed(3)
    torch.testing.assert_close(bound, torch.logsumexp(model.log_weights(x, 7), 0) - math.log(7))


def test_bounds_against_exact_discrete_likelihood() -> None:
    # Exact log P(x) = log ∫ p(x+u) du and the exact one-draw bound E_q[log p(x+u) - log q(u|x)]
    # by grid integrals, against the model's Monte-Carlo estimates. q(u|x) has logit-normal tails
    # while p(x+u) does not vanish at the bin edges, so the importance weights p/q are heavy-tailed
    # and IW-k approaches log P(x) slowly; a q near its initialisation keeps IW-4000 close.
    model = toy_model(dequant_std=0.05)
    masses = grid_flow_masses(model)
    n = 100
    centres = (torch.arange(n, dtype=F64) + 0.5) / n
    u = torch.cartesian_prod(centres, centres).reshape(-1, 1, 1, 2)
    for pixels in ([1.0, 2.0], [0.0, 3.0], [3.0, 3.0]):
        x = torch.tensor(pixels, dtype=F64).view(1, 1, 1, 2)
        log_px = masses[int(pixels[0]), int(pixels[1])].log().item()
        with torch.no_grad():
            log_q = model.log_q(u, x.expand(len(u), -1, -1, -1))
            log_p = model.flow_log_prob(x + u)
            log_w = model.log_weights(x, 4000, generator=torch.Generator().manual_seed(0))[:, 0]
        elbo = (log_q.exp() * (log_p - log_q)).sum().item() / n**2
        assert log_px == pytest.approx(torch.logsumexp(log_p, 0).item() - 2 * math.log(n), abs=1e-3)
        assert elbo < log_px - 0.02  # a genuine gap (KL(q || posterior) > 0): a wrong constant would show
        single, sem = log_w.mean().item(), log_w.std().item() / math.sqrt(len(log_w))
        assert single == pytest.approx(elbo, abs=4 * sem + 1e-3)  # log_prob is an unbiased estimate of it
        iw = (torch.logsumexp(log_w, 0) - math.log(len(log_w))).item()
        assert single < iw  # Jensen on the same draws
        assert abs(iw - log_px) < 0.1, (iw, log_px)  # IW-4000 is close to log P(x) ...
        assert abs(iw - log_px) < 0.5 * (log_px - elbo)  # ... and much closer than the one-draw bound


def test_importance_weighted_bound_nondecreasing_in_k() -> None:
    model = toy_model(dequant_std=0.3)
    x = torch.tensor([[[[1.0, 2.0]]]], dtype=F64)
    log_px = grid_flow_masses(model)[1, 2].log().item()
    repeats = 1000
    torch.manual_seed(0)
    estimates = {}
    with torch.no_grad():
        for k in (1, 10, 100):
            bound = model.log_prob_bound(x.expand(repeats, -1, -1, -1), k)
            estimates[k] = (bound.mean().item(), bound.std().item() / math.sqrt(repeats))
    for small, large in [(1, 10), (10, 100)]:
        (m_s, e_s), (m_l, e_l) = estimates[small], estimates[large]
        assert m_s <= m_l + 3 * math.hypot(e_s, e_l), estimates
    for mean, sem in estimates.values():
        assert mean <= log_px + 3 * sem, (estimates, log_px)
    assert estimates[1][0] < estimates[100][0] - 0.1  # the bound really tightens here


def test_discrete_masses_sum_to_the_flow_mass_inside_the_box() -> None:
    # Σ_x P(x) = ∫_{[0,K)^D} p(y) dy: the logit pre-processing lets mass leak outside [0, K)^D (a
    # sub-probability, still a valid bound). Identity flow: the leak is analytic, Φ(logit α) per side.
    for alpha in (0.05, 1e-3):
        identity = make_identity(FlowPP((1, 1, 2), 4, hidden_channels=4, n_scales=1, logit_alpha=alpha).to(F64))
        inside = 1 - 2 * torch.special.ndtr(torch.tensor(math.log(alpha / (1 - alpha)), dtype=F64))
        assert grid_flow_masses(identity).sum().item() == pytest.approx(inside.item() ** 2, abs=1e-4)
    # randomised flow: the grid sum equals the fraction of flow samples that land in [0, K)^2
    model = toy_model()
    total = grid_flow_masses(model).sum().item()
    n = 40_000
    torch.manual_seed(0)
    with torch.no_grad():
        y = model.inverse(torch.randn(n, 2, dtype=F64))
    fraction = ((y >= 0) & (y < 4)).flatten(1).all(dim=1).double().mean().item()
    sem = math.sqrt(fraction * (1 - fraction) / n)
    assert abs(total - fraction) < 4 * sem + 1e-3, (total, fraction)
    # and with a small α nothing leaks: the K^D probabilities sum to one
    small = toy_model(logit_alpha=1e-3)
    assert grid_flow_masses(small).sum().item() == pytest.approx(1.0, abs=0.01)


# --- the interface --------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "levels"), [((1, 8, 8), 17), ((1, 14, 14), 256)])
def test_extreme_images_finite_and_gradients_flow(shape: tuple[int, ...], levels: int) -> None:
    torch.manual_seed(0)
    model = randomise(FlowPP(shape, levels, hidden_channels=8, steps=2), std=0.02)
    assert model.exact is False and model.discrete is True
    for value in (0.0, levels - 1.0):
        x = torch.full((2, *shape), value)
        assert torch.isfinite(model.log_prob(x)).all()
        assert torch.isfinite(model.log_prob_bound(x, 3)).all()
        model.zero_grad()
        loss = model.loss(x)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert any(p.grad.abs().sum() > 0 for name, p in model.named_parameters() if name.startswith("dequantizer."))
        assert any(
            p.grad.abs().sum() > 0 for name, p in model.named_parameters() if not name.startswith("dequantizer.")
        )


def test_errors_say_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"n_scales=3.*\(1, 14, 14\).*n_scales <= 2"):
        FlowPP((1, 14, 14), 256, n_scales=3)
    FlowPP((1, 14, 14), 256, n_scales=2, hidden_channels=4, steps=1)  # 14 → 7 is fine
    with pytest.raises(ValueError, match="n_scales <= 3"):
        FlowPP((1, 8, 8), 17, n_scales=4)
    with pytest.raises(ValueError, match="needs levels K >= 2"):
        FlowPP((1, 8, 8), None)
    with pytest.raises(ValueError, match="'components' must be a positive integer"):
        FlowPP((2,), None, components=0)
    model = FlowPP((1, 4, 4), 17, hidden_channels=4, steps=1)
    with pytest.raises(ValueError, match="integer levels in \\[0, 16\\].*not x \\+ u"):
        model.log_prob(torch.rand(2, 1, 4, 4) * 16)
    with pytest.raises(ValueError, match="integer levels"):
        model.log_prob(torch.full((2, 1, 4, 4), 17.0))
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(torch.zeros(2, 1, 8, 8))
