"""Models against brute force: autograd Jacobians, grid integrals, direct sums over levels."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from brute_force import dequantised_levels, jacobian_logdet, randomise
from vaeflow.models import VAE, RealNVP, build_model
from vaeflow.models import vae as vae_module
from vaeflow.models.coupling import channel_coupling, checkerboard_coupling, vector_coupling
from vaeflow.models.distributions import (
    LOG_2PI,
    diagonal_normal_log_prob,
    discretized_logistic_log_prob,
    discretized_logistic_sample,
    standard_normal_log_prob,
)
from vaeflow.models.transforms import Bijection, Compose, LogitPreprocess, Squeeze

F64 = torch.float64


# --- discretised logistic --------------------------------------------------------------------


@pytest.mark.parametrize("levels", [17, 256])
def test_discretized_logistic_sums_to_one(levels: int) -> None:
    means = torch.tensor([-1e4, -300.0, -3.0, 0.0, 0.4, levels / 2 + 0.3, levels - 1.0, levels + 40.0, 1e4], dtype=F64)
    log_scales = torch.tensor([-6.0, -3.0, -1.0, 0.0, 1.5, 4.0, 8.0], dtype=F64)
    x = torch.arange(levels, dtype=F64).view(-1, 1, 1)
    log_p = discretized_logistic_log_prob(x, means.view(1, -1, 1), log_scales.view(1, 1, -1), levels)
    assert torch.isfinite(log_p).all()
    total = torch.logsumexp(log_p, dim=0)
    torch.testing.assert_close(total, torch.zeros_like(total), atol=1e-10, rtol=0)
    # float32 too, the dtype of training
    log_p32 = discretized_logistic_log_prob(
        x.float(), means.float().view(1, -1, 1), log_scales.float().view(1, 1, -1), levels
    )
    assert torch.isfinite(log_p32).all()
    assert torch.logsumexp(log_p32, dim=0).abs().max() < 1e-4


@pytest.mark.parametrize("levels", [17, 256])
def test_discretized_logistic_matches_direct_sigmoid_difference(levels: int) -> None:
    x = torch.arange(levels, dtype=F64).view(-1, 1, 1)
    mean = torch.linspace(-2.0, levels + 1.0, 7, dtype=F64).view(1, -1, 1)
    log_scale = torch.linspace(-1.0, 2.5, 5, dtype=F64).view(1, 1, -1)
    s = log_scale.exp()
    upper = torch.where(x > levels - 1.5, torch.ones(()), torch.sigmoid((x + 0.5 - mean) / s))
    lower = torch.where(x < 0.5, torch.zeros(()), torch.sigmoid((x - 0.5 - mean) / s))
    direct = upper - lower
    well_conditioned = direct > 1e-8
    ours = discretized_logistic_log_prob(x, mean, log_scale, levels)
    torch.testing.assert_close(ours[well_conditioned], direct[well_conditioned].log(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("levels", [17, 256])
def test_discretized_logistic_finite_at_extreme_images(levels: int) -> None:
    mean = torch.linspace(-50.0, levels + 50.0, 32).requires_grad_()
    log_scale = torch.linspace(-3.0, 5.0, 32).requires_grad_()
    for value in (0.0, levels - 1.0):
        x = torch.full((32,), value)
        log_p = discretized_logistic_log_prob(x, mean, log_scale, levels)
        assert torch.isfinite(log_p).all()
        (grad_mean, grad_scale) = torch.autograd.grad(log_p.sum(), (mean, log_scale))
        assert torch.isfinite(grad_mean).all() and torch.isfinite(grad_scale).all()


def test_discretized_logistic_sample_frequencies_match_mass() -> None:
    levels, n = 17, 200_000
    generator = torch.Generator().manual_seed(3)
    for mean, log_scale in [(5.3, 0.0), (-2.0, 0.7), (16.5, -1.0)]:
        mean_t = torch.full((n,), mean, dtype=F64)
        log_scale_t = torch.full((n,), log_scale, dtype=F64)
        draws = discretized_logistic_sample(mean_t, log_scale_t, levels, generator=generator)
        assert torch.equal(draws, draws.round()) and draws.min() >= 0 and draws.max() <= levels - 1
        freq = torch.bincount(draws.long(), minlength=levels).to(F64) / n
        mass = discretized_logistic_log_prob(
            torch.arange(levels, dtype=F64), torch.tensor(mean, dtype=F64), torch.tensor(log_scale, dtype=F64), levels
        ).exp()
        assert ((freq - mass).abs() <= 5 * (mass * (1 - mass) / n).sqrt() + 1e-5).all()


def test_normal_log_probs_match_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, 4, generator=generator, dtype=F64)
    mean = torch.randn(5, 3, 4, generator=generator, dtype=F64)
    log_std = torch.randn(5, 3, 4, generator=generator, dtype=F64)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum((1, 2))
    torch.testing.assert_close(standard_normal_log_prob(z), expected)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(z)
    torch.testing.assert_close(diagonal_normal_log_prob(z, mean, log_std), expected.sum((1, 2)))
    torch.testing.assert_close(diagonal_normal_log_prob(z, mean, log_std, batch_dims=2), expected.sum(2))
    # the constant is kept: log N(0; 0, 1) = -½ log 2π per dimension
    assert standard_normal_log_prob(torch.zeros(1, 7, dtype=F64)).item() == pytest.approx(-3.5 * LOG_2PI)


# --- transforms and couplings ----------------------------------------------------------------


def _transform_cases() -> list[tuple[str, Bijection, Tensor]]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(3, 2, 4, 4, generator=generator, dtype=F64)
    cases: list[tuple[str, Bijection, Tensor]] = [
        ("logit", LogitPreprocess(17, 0.05), dequantised_levels((3, 2, 4, 4), 17)),
        ("squeeze", Squeeze(), image),
        ("checkerboard", checkerboard_coupling(2, 4, 4, 0, hidden=8, res_blocks=1), image),
        ("checkerboard-odd", checkerboard_coupling(2, 4, 4, 1, hidden=8, res_blocks=1), image),
        (
            "channel",
            channel_coupling(4, 2, 2, 1, hidden=8, res_blocks=1),
            image.reshape(3, 4, 2, 4)[..., :2].contiguous(),
        ),
        ("vector", vector_coupling(3, 0, hidden=16, layers=2), torch.randn(3, 3, generator=generator, dtype=F64)),
        ("vector-odd", vector_coupling(2, 1, hidden=16, layers=2), torch.randn(3, 2, generator=generator, dtype=F64)),
        (
            "compose",
            Compose(
                checkerboard_coupling(1, 4, 4, 0, hidden=8, res_blocks=1),
                Squeeze(),
                channel_coupling(4, 2, 2, 0, hidden=8, res_blocks=1),
            ),
            image[:, :1].contiguous(),
        ),
    ]
    return [(name, randomise(t.to(F64), seed=i), x) for i, (name, t, x) in enumerate(cases)]


@pytest.mark.parametrize("case", _transform_cases(), ids=lambda c: c[0])
def test_transform_inverse_and_jacobian(case: tuple[str, Bijection, Tensor]) -> None:
    name, transform, x = case
    z, logdet = transform(x)
    assert logdet.shape == (x.shape[0],)
    if name.startswith(("checkerboard", "channel", "vector", "compose")):
        unchanged = Squeeze()(x)[0] if name == "compose" else x
        assert (z - unchanged).abs().max() > 1e-3, "randomised coupling should not be the identity"
        assert logdet.abs().min() > 1e-4
    x_back = transform.inverse(z)
    assert ((x_back - x).abs().max() / x.abs().max()) < 1e-10
    for i in range(x.shape[0]):
        brute = jacobian_logdet(lambda v: transform(v)[0], x[i : i + 1])
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-8)


def test_logit_preprocess_logdet_formula() -> None:
    levels, alpha = 256, 0.05
    y = dequantised_levels((2, 1, 3, 3), levels)
    _, logdet = LogitPreprocess(levels, alpha)(y)
    s = alpha + (1 - 2 * alpha) * y / levels
    by_hand = (-math.log(levels) + math.log(1 - 2 * alpha) - torch.log(s) - torch.log(1 - s)).sum((1, 2, 3))
    torch.testing.assert_close(logdet, by_hand)


def test_fresh_coupling_is_identity() -> None:
    coupling = checkerboard_coupling(2, 4, 4, 0, hidden=8, res_blocks=2)
    x = torch.randn(3, 2, 4, 4)
    z, logdet = coupling(x)
    assert torch.equal(z, x) and torch.equal(logdet, torch.zeros(3))


# --- RealNVP ---------------------------------------------------------------------------------


def _image_flow(n_scales: int = 2, shape: tuple[int, int, int] = (1, 4, 4)) -> RealNVP:
    torch.manual_seed(0)
    flow = RealNVP(shape, 17, hidden_channels=8, res_blocks=1, n_scales=n_scales).to(F64)
    return randomise(flow, std=0.05)


@pytest.mark.parametrize(("n_scales", "shape"), [(1, (1, 4, 4)), (2, (1, 4, 4)), (3, (1, 8, 8))])
def test_realnvp_image_inverse_and_jacobian(n_scales: int, shape: tuple[int, int, int]) -> None:
    flow = _image_flow(n_scales, shape)
    y = dequantised_levels((3, *shape), 17)
    z, logdet = flow.forward_and_logdet(y)
    assert z.shape == (3, math.prod(shape))
    y_back = flow.inverse(z)
    assert ((y_back - y).abs().max() / y.abs().max()) < 1e-8
    for i in range(y.shape[0]):
        brute = jacobian_logdet(lambda v: flow.forward_and_logdet(v)[0], y[i : i + 1])
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-6)
    # log p = log N(z) + log|det|, log_prob_bound equals it for every k
    torch.testing.assert_close(flow.log_prob(y), standard_normal_log_prob(z) + logdet)
    torch.testing.assert_close(flow.log_prob_bound(y, 1000), flow.log_prob(y))


def test_realnvp_vector_inverse_and_jacobian() -> None:
    torch.manual_seed(0)
    flow = randomise(RealNVP((2,), None, coupling_layers=6, hidden=16).to(F64))
    x = torch.randn(5, 2, dtype=F64) * 2
    z, logdet = flow.forward_and_logdet(x)
    assert ((flow.inverse(z) - x).abs().max() / x.abs().max()) < 1e-10
    for i in range(x.shape[0]):
        brute = jacobian_logdet(lambda v: flow.forward_and_logdet(v)[0], x[i : i + 1])
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-8)


def test_identity_flow_gives_standard_normal_density() -> None:
    flow = RealNVP((2,), None).to(F64)
    x = torch.randn(100, 2, dtype=F64)
    torch.testing.assert_close(flow.log_prob(x), -0.5 * x.square().sum(1) - math.log(2 * math.pi))


def test_identity_image_flow_is_logit_preprocess_plus_normal() -> None:
    levels, alpha = 256, 0.05
    flow = RealNVP((1, 4, 4), levels, hidden_channels=4, res_blocks=1, logit_alpha=alpha).to(F64)
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
    torch.testing.assert_close(flow.log_prob(y), by_hand)


def test_realnvp_rejects_too_many_scales() -> None:
    with pytest.raises(ValueError, match=r"n_scales=3.*\(1, 14, 14\).*n_scales <= 2"):
        RealNVP((1, 14, 14), 256, n_scales=3)
    RealNVP((1, 14, 14), 256, n_scales=2, hidden_channels=4)  # 14 → 7 is fine
    with pytest.raises(ValueError, match="n_scales <= 3"):
        RealNVP((1, 8, 8), 17, n_scales=4)


# --- VAE -------------------------------------------------------------------------------------


def _tiny_vae(data_shape: tuple[int, ...], levels: int | None, seed: int = 0, **options: object) -> VAE:
    torch.manual_seed(seed)
    return VAE(data_shape, levels, **{"latent_dim": 1, "hidden": 16, "layers": 1, **options}).to(F64)  # type: ignore[arg-type]


def grid_log_marginal(model: VAE, x: Tensor, half_width: float = 12.0, n: int = 24001) -> Tensor:
    """``log ∫ p(x|z) N(z; 0, 1) dz`` on a fine 1-D grid (rectangle rule; the integrand is negligible at the ends)."""
    z = torch.linspace(-half_width, half_width, n, dtype=F64).view(-1, 1)
    with torch.no_grad():
        joint = model.log_likelihood(x.flatten(1)[:, None, :], z[None]) + standard_normal_log_prob(z)[None]
    return torch.logsumexp(joint, dim=1) + math.log(2 * half_width / (n - 1))


def test_vae_elbo_below_iwae_on_same_draws() -> None:
    model = VAE((1, 4, 4), 17, latent_dim=3, hidden=32).to(F64)
    x = torch.randint(0, 17, (6, 1, 4, 4)).to(F64)
    with torch.no_grad():
        log_w = model.log_weights(x, 50, generator=torch.Generator().manual_seed(0))
    assert log_w.shape == (50, 6)
    assert (log_w.mean(0) <= torch.logsumexp(log_w, 0) - math.log(50) + 1e-12).all()


def test_vae_log_weights_mean_is_the_analytic_elbo() -> None:
    # E_q[log w] is the ELBO; the analytic-KL estimate must agree within MC error (same constants).
    model = _tiny_vae((1, 2, 2), 17, latent_dim=2)
    with torch.no_grad():  # a posterior far from N(0, I): every KL term matters
        model.encoder[-1].bias.copy_(torch.tensor([0.8, -0.5, -1.2, 0.6]))
    x = torch.tensor([[[[0.0, 16.0], [7.0, 3.0]]]], dtype=F64)
    n = 20_000
    torch.manual_seed(1)
    with torch.no_grad():
        log_w = model.log_weights(x, n)[:, 0]
        elbo = model.log_prob(x.expand(n, -1, -1, -1))
    sem = math.sqrt(log_w.var() / n + elbo.var() / n)
    assert abs(log_w.mean().item() - elbo.mean().item()) < 4 * sem


def test_vae_log_weights_do_not_depend_on_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    model = VAE((1, 4, 4), 17, latent_dim=2, hidden=8).to(F64)
    x = torch.randint(0, 17, (3, 1, 4, 4)).to(F64)
    with torch.no_grad():
        whole = model.log_weights(x, 40, generator=torch.Generator().manual_seed(5))
        monkeypatch.setattr(vae_module, "_CHUNK_ENTRIES", 1)
        chunked = model.log_weights(x, 40, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)


def test_vae_iwae_nondecreasing_in_k_and_below_log_marginal() -> None:
    model = _tiny_vae((1, 2, 2), 17, seed=3)
    x = torch.tensor([[[[2.0, 9.0], [15.0, 0.0]]]], dtype=F64)
    log_px = grid_log_marginal(model, x).item()
    repeats = 3000
    torch.manual_seed(0)
    estimates = {}
    with torch.no_grad():
        for k in (1, 10, 100):
            log_w = model.log_weights(x.expand(repeats, -1, -1, -1), k)
            iwae = torch.logsumexp(log_w, 0) - math.log(k)
            estimates[k] = (iwae.mean().item(), iwae.std().item() / math.sqrt(repeats))
    for small, large in [(1, 10), (10, 100)]:
        (m_s, e_s), (m_l, e_l) = estimates[small], estimates[large]
        assert m_s <= m_l + 3 * math.hypot(e_s, e_l), estimates
    for mean, sem in estimates.values():
        assert mean <= log_px + 3 * sem
    assert estimates[1][0] < estimates[100][0]  # the bound really tightens here


@pytest.mark.parametrize("kind", ["image", "vector"])
def test_vae_bounds_against_grid_integral(kind: str) -> None:
    if kind == "image":
        model = _tiny_vae((1, 2, 2), 17, seed=0)
        x = torch.tensor([[[[3.0, 12.0], [16.0, 0.0]]], [[[8.0, 8.0], [1.0, 5.0]]]], dtype=F64)
    else:
        model = _tiny_vae((2,), None, seed=1)
        x = torch.tensor([[0.3, -1.2], [1.5, 0.8]], dtype=F64)
    log_px = grid_log_marginal(model, x)
    with torch.no_grad():
        log_w = model.log_weights(x, 5000, generator=torch.Generator().manual_seed(0))
    iwae = torch.logsumexp(log_w, 0) - math.log(5000)
    elbo = log_w.mean(0)
    assert (elbo <= iwae).all()
    assert (iwae <= log_px + 0.02).all(), (iwae, log_px)
    assert ((iwae - log_px).abs() < 0.05).all(), (iwae, log_px)
    assert (elbo < log_px - 0.01).all()  # a genuine gap, so the test would notice a wrong constant


# --- both models -----------------------------------------------------------------------------


def test_beta_weights_only_the_kl_in_the_loss() -> None:
    x = torch.randint(0, 17, (4, 1, 8, 8), generator=torch.Generator().manual_seed(2)).double()
    losses = {}
    for beta in (0.0, 1.0, 2.0):
        torch.manual_seed(0)
        model = VAE((1, 8, 8), 17, beta=beta).double()
        torch.manual_seed(1)
        losses[beta] = model.loss(x).item()
    # loss(β) = -rec + β·KL is affine in β for a fixed draw
    assert losses[2.0] - losses[1.0] == pytest.approx(losses[1.0] - losses[0.0], rel=1e-4)
    assert losses[1.0] > losses[0.0]


def test_build_model_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'nice'.*realnvp, vae"):
        build_model("nice", (1, 8, 8), 17, {})
    with pytest.raises(ValueError, match=r"'vae' has no option\(s\) 'latent'.*latent_dim"):
        build_model("vae", (1, 8, 8), 17, {"latent": 4})
    with pytest.raises(ValueError, match=r"'realnvp' has no option\(s\) 'n_scale'.*n_scales"):
        build_model("realnvp", (1, 8, 8), 17, {"n_scale": 4})
    model = build_model("vae", (1, 8, 8), 17, {"latent_dim": 4})
    assert isinstance(model, VAE) and model.latent_dim == 4 and model.exact is False and model.discrete is True
    flow = build_model("realnvp", (2,), None, {"coupling_layers": 4})
    assert flow.exact is True and flow.discrete is False
