"""VAE-IAF and the VAE's training options against brute force.

Autograd Jacobians of ε → z_T for the IAF log-det, exact reductions to the plain VAE, a 2-D grid
integral of p(x|z)p(z) for log p(x), and independent re-computations of the IWAE training loss.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian

from brute_force import randomise
from vaeflow.models import model_options
from vaeflow.models import vae as vae_module
from vaeflow.models.distributions import standard_normal_log_prob
from vaeflow.models.vae import VAE
from vaeflow.models.vae_iaf import GATE_BIAS, VAEIAF

F64 = torch.float64
IMAGE_X = torch.tensor([[[[3.0, 12.0], [16.0, 0.0]]], [[[8.0, 8.0], [1.0, 5.0]]]], dtype=F64)
VECTOR_X = torch.tensor([[0.3, -1.2], [1.5, 0.8]], dtype=F64)


def tiny_iaf(data_shape: tuple[int, ...], levels: int | None, seed: int = 0, **options: object) -> VAEIAF:
    """A small float64 VAE-IAF whose IAF steps are far from the identity."""
    torch.manual_seed(seed)
    defaults: dict[str, object] = {"latent_dim": 2, "hidden": 16, "layers": 1, "iaf_hidden": 8, "context_dim": 3}
    model = VAEIAF(data_shape, levels, **{**defaults, **options}).to(F64)  # type: ignore[arg-type]
    randomise(model.iaf, std=0.5)
    return model


def base_log_q(model: VAEIAF, posterior: tuple[Tensor, ...], eps: Tensor) -> Tensor:
    """``log q(z_0|x)`` of the Gaussian before the flow."""
    return VAE.posterior_sample(model, posterior[:2], eps)[1]


def grid_log_marginal(model: VAE, x: Tensor, half_width: float = 6.0, n: int = 200) -> Tensor:
    """``log ∫∫ p(x|z) N(z; 0, I) dz``, 2-D latent, on an ``n × n`` grid over ``[-w, w]²`` (rectangle rule)."""
    t = torch.linspace(-half_width, half_width, n, dtype=F64)
    z = torch.cartesian_prod(t, t)
    with torch.no_grad():
        joint = model.log_likelihood(x.flatten(1)[:, None, :], z[None]) + standard_normal_log_prob(z)[None]
    return torch.logsumexp(joint, dim=1) + 2 * math.log(2 * half_width / (n - 1))


# --- the IAF posterior ---------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_log_q_is_the_change_of_variables_with_autograd_jacobian(steps: int) -> None:
    model = tiny_iaf((1, 4, 4), 17, latent_dim=4, iaf_steps=steps)
    x = torch.randint(0, 17, (1, 1, 4, 4), generator=torch.Generator().manual_seed(0)).to(F64)
    eps = torch.randn(1, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        posterior = model.posterior_parameters(x)
        z, log_q = model.posterior_sample(posterior, eps)
        jac = jacobian(lambda e: model.posterior_sample(posterior, e[None])[0][0], eps[0])
        log_det = torch.linalg.slogdet(jac)[1]
        brute = standard_normal_log_prob(eps) - log_det
        torch.testing.assert_close(log_q, brute, rtol=0, atol=1e-4)
        assert abs(log_q.item() - brute.item()) < 1e-10  # in float64 it is exact to rounding
        # the IAF part of the log-det is material, so a dropped log-det would fail above
        iaf_log_det = log_det - posterior[1].sum()
        assert iaf_log_det.abs().item() > 0.1, iaf_log_det


def test_variable_order_is_reversed_between_steps() -> None:
    """One step: ∂z/∂ε lower triangular (identity order); a second step in reversed order is upper triangular."""
    model = tiny_iaf((1, 2, 2), 17, latent_dim=4, iaf_steps=2, iaf_hidden=32)
    x = IMAGE_X[:1]
    eps = torch.randn(4, generator=torch.Generator().manual_seed(0), dtype=F64)
    below, above = torch.ones(4, 4).tril(-1).bool(), torch.ones(4, 4).triu(1).bool()

    def jac() -> Tensor:
        with torch.no_grad():
            posterior = model.posterior_parameters(x)
            return jacobian(lambda e: model.posterior_sample(posterior, e[None])[0][0], eps)

    full = jac()
    assert (full[below] != 0).any() and (full[above] != 0).any()  # both steps together: dense
    saved = [made.output.weight.detach().clone() for made in model.iaf]
    with torch.no_grad():
        model.iaf[1].output.weight.zero_()  # step 2 a constant scaling: only step 1 mixes
    first_only = jac()
    assert (first_only[above] == 0).all() and (first_only[below] != 0).any()
    with torch.no_grad():
        model.iaf[1].output.weight.copy_(saved[1])
        model.iaf[0].output.weight.zero_()  # only step 2 mixes, in the reversed order
    second_only = jac()
    assert (second_only[below] == 0).all() and (second_only[above] != 0).any()


def test_no_steps_is_exactly_the_vae() -> None:
    torch.manual_seed(0)
    vae = VAE((1, 4, 4), 17, latent_dim=3, hidden=16).to(F64)
    iaf = VAEIAF((1, 4, 4), 17, latent_dim=3, hidden=16, iaf_steps=0, context_dim=2).to(F64)
    state = vae.state_dict()
    last = "encoder.4"
    with torch.no_grad():
        for name, p in iaf.named_parameters():
            if name.startswith(last):
                p.normal_()
                p[: 2 * 3].copy_(state[name])  # μ and log σ rows; the context rows are unused
            else:
                p.copy_(state[name])
    x = torch.randint(0, 17, (5, 1, 4, 4), generator=torch.Generator().manual_seed(0)).to(F64)
    with torch.no_grad():
        a = vae.log_weights(x, 30, generator=torch.Generator().manual_seed(3))
        b = iaf.log_weights(x, 30, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(b, a, rtol=0, atol=1e-12)  # equal up to the matmul's rounding


def test_fresh_steps_are_a_gated_scaling_of_the_vae_posterior() -> None:
    """Zero-initialised MADEs give m = 0, s = GATE_BIAS: z_T = c^T z_0, c = sigmoid(GATE_BIAS), and
    q(z_T|x) is exactly the Gaussian N(c^T μ, (c^T σ)²): the same log-weights as a VAE with that encoder."""
    steps = 2
    torch.manual_seed(0)
    iaf = VAEIAF((1, 4, 4), 17, latent_dim=3, hidden=16, iaf_steps=steps, context_dim=2).to(F64)
    vae = VAE((1, 4, 4), 17, latent_dim=3, hidden=16).to(F64)
    log_c = math.log(torch.sigmoid(torch.tensor(GATE_BIAS, dtype=F64)).item())
    with torch.no_grad():
        state = iaf.state_dict()
        for name, p in vae.named_parameters():
            p.copy_(state[name][: p.shape[0]])
        vae.encoder[-1].weight[:3] *= math.exp(steps * log_c)
        vae.encoder[-1].bias[:3] *= math.exp(steps * log_c)
        vae.encoder[-1].bias[3:] += steps * log_c
    x = torch.randint(0, 17, (5, 1, 4, 4), generator=torch.Generator().manual_seed(0)).to(F64)
    with torch.no_grad():
        a = vae.log_weights(x, 30, generator=torch.Generator().manual_seed(3))
        b = iaf.log_weights(x, 30, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(b, a, rtol=0, atol=1e-10)


def test_log_prob_is_the_one_sample_log_weight() -> None:
    """log_prob (ELBO terms) and log_weights (k = 1) draw the same ε from the same seed: equal numbers."""
    model = tiny_iaf((1, 2, 2), 17, latent_dim=3)
    x = IMAGE_X
    torch.manual_seed(7)
    elbo = model.log_prob(x)
    torch.manual_seed(7)
    log_w = model.log_weights(x, 1)[0]
    torch.testing.assert_close(elbo, log_w, rtol=0, atol=1e-12)


def test_iaf_log_weights_do_not_depend_on_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_iaf((1, 4, 4), 17, latent_dim=3)
    x = torch.randint(0, 17, (3, 1, 4, 4), generator=torch.Generator().manual_seed(0)).to(F64)
    with torch.no_grad():
        whole = model.log_weights(x, 40, generator=torch.Generator().manual_seed(5))
        monkeypatch.setattr(vae_module, "_CHUNK_ENTRIES", 1)
        chunked = model.log_weights(x, 40, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)


# --- bounds ---------------------------------------------------------------------------------


def test_iaf_elbo_below_iwae_and_iwae_nondecreasing_in_k() -> None:
    model = tiny_iaf((1, 2, 2), 17, seed=3)
    x = IMAGE_X[:1]
    with torch.no_grad():  # Jensen on the same draws: deterministic
        log_w = model.log_weights(IMAGE_X, 50, generator=torch.Generator().manual_seed(0))
    assert (log_w.mean(0) <= torch.logsumexp(log_w, 0) - math.log(50) + 1e-12).all()
    repeats = 1000
    estimates = {}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k in (1, 10, 100):
            log_w = model.log_weights(x.expand(repeats, -1, -1, -1), k, generator=generator)
            iwae = torch.logsumexp(log_w, 0) - math.log(k)
            estimates[k] = (iwae.mean().item(), iwae.std().item() / math.sqrt(repeats))
    for small, large in [(1, 10), (10, 100)]:
        (m_s, e_s), (m_l, e_l) = estimates[small], estimates[large]
        assert m_s <= m_l + 3 * math.hypot(e_s, e_l), estimates
    log_px = grid_log_marginal(model, x).item()
    for mean, sem in estimates.values():
        assert mean <= log_px + 3 * sem, (estimates, log_px)
    assert estimates[1][0] < estimates[100][0] - 0.05  # the bound really tightens here


@pytest.mark.parametrize("kind", ["image", "vector"])
def test_iaf_bounds_against_2d_grid_integral(kind: str, noise_seed: int = 0) -> None:
    """ELBO ≤ IWAE-2000 ≤ log p(x) + tol and IWAE-2000 ≈ log p(x), log p(x) from a 200 × 200 grid.

    The posterior (encoder and IAF steps; the decoder is frozen so log p(x) stays fixed) is first
    fitted to the two examples by IWAE-8 training, as in real use: an arbitrary q has heavy-tailed
    weights and IWAE-2000 would be far from converged. Tolerance: by the delta method
    log p̂_k - log p ≈ p̂_k/p - 1, of standard deviation sd_k = sqrt(Var_q[w/p]/k) and bias
    -Var_q[w/p]/(2k) (Maddison et al. 2017), with Var_q[w/p] estimated from the draws themselves
    (p from the grid). Each of R = 10 independent IWAE-2000 estimates must lie below
    log p + 5·sd_k; their mean within 5·sd_k/√R + bias of log p; 1e-3 is added for the grid, whose
    error is far smaller (a 400 × 400 grid over [-8, 8]² agrees to 1e-4). A log q off by the IAF
    log-det (about 0.2–0.3 nats here) or by a Gaussian constant fails by many tolerances.
    """
    if kind == "image":
        model, x = tiny_iaf((1, 2, 2), 17, seed=0), IMAGE_X
    else:
        model, x = tiny_iaf((2,), None, seed=0), VECTOR_X
    optimiser = torch.optim.Adam([*model.encoder.parameters(), *model.iaf.parameters()], lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(300):
        optimiser.zero_grad()
        log_w = model.log_weights(x, 32, generator=generator).reshape(4, 8, len(x))
        (-(torch.logsumexp(log_w, 1) - math.log(8)).mean()).backward()
        optimiser.step()

    log_px = grid_log_marginal(model, x)
    torch.testing.assert_close(grid_log_marginal(model, x, 8.0, 400), log_px, rtol=0, atol=1e-4)
    repeats, k = 10, 2000
    with torch.no_grad():
        posterior = model.posterior_parameters(x)
        eps = torch.randn((repeats, k, len(x), 2), generator=torch.Generator().manual_seed(noise_seed), dtype=F64)
        z, log_q = model.posterior_sample(posterior, eps)
        log_w = model.log_likelihood(x.flatten(1), z) + standard_normal_log_prob(z, batch_dims=3) - log_q
        iaf_log_det = base_log_q(model, posterior, eps) - log_q
    iwae = torch.logsumexp(log_w, 1) - math.log(k)  # (repeats, batch)
    elbo = log_w.mean(1)
    relative_var = torch.exp(log_w - log_px).flatten(0, 1).var(0)
    sd_k = (relative_var / k).sqrt()
    tol = 5 * sd_k / math.sqrt(repeats) + relative_var / (2 * k) + 1e-3
    assert (tol < 0.03).all(), tol  # the check is sharp
    assert (iaf_log_det.mean((0, 1)).abs() > 5 * tol).all(), (iaf_log_det.mean((0, 1)), tol)
    assert (elbo <= iwae).all()  # Jensen, on the same draws
    assert (iwae <= log_px + 5 * sd_k + 1e-3).all(), (iwae, log_px, sd_k)
    assert ((iwae.mean(0) - log_px).abs() < tol).all(), (iwae.mean(0), log_px, tol)


# --- the VAE family's training options ------------------------------------------------------


def test_iwae_loss_matches_an_independent_computation_on_the_same_draws() -> None:
    """VAE(iwae_k = k).loss = -mean IWAE-k, re-computed with torch.distributions on the same ε; same gradients."""
    torch.manual_seed(0)
    k = 5
    model = VAE((1, 4, 4), 17, latent_dim=3, hidden=16, iwae_k=k).to(F64)
    x = torch.randint(0, 17, (6, 1, 4, 4), generator=torch.Generator().manual_seed(0)).to(F64)
    torch.manual_seed(11)
    loss = model.loss(x)
    grads = torch.autograd.grad(loss, list(model.parameters()))

    torch.manual_seed(11)
    eps = torch.randn(k, 6, 3, dtype=F64)
    mean, log_std = model.encode(x)
    q = torch.distributions.Normal(mean, log_std.exp())
    z = mean + log_std.exp() * eps
    prior = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    log_w = model.log_likelihood(x.flatten(1), z) + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
    reference = -(torch.logsumexp(log_w, 0) - math.log(k)).mean()
    reference_grads = torch.autograd.grad(reference, list(model.parameters()))
    torch.testing.assert_close(loss, reference, rtol=0, atol=1e-10)
    for g, r in zip(grads, reference_grads, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-10)
    # and not the ELBO: with k draws the loss is below the negative mean log-weight on the same draws
    assert loss.item() < -log_w.mean().item()


def test_iaf_iwae_loss_is_minus_mean_iwae_with_finite_gradients() -> None:
    model = tiny_iaf((1, 2, 2), 17, latent_dim=3, iwae_k=4)
    torch.manual_seed(2)
    loss = model.loss(IMAGE_X)
    torch.manual_seed(2)
    reference = -(torch.logsumexp(model.log_weights(IMAGE_X, 4), 0) - math.log(4)).mean()
    torch.testing.assert_close(loss, reference, rtol=0, atol=1e-12)
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert all(grads[name].abs().sum() > 0 for name in grads if name.startswith("iaf."))


@pytest.mark.parametrize("cls", [VAE, VAEIAF])
def test_beta_weights_only_the_kl(cls: type[VAE]) -> None:
    x = torch.randint(0, 17, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0)).to(F64)
    losses = {}
    for beta in (0.0, 1.0, 2.0):  # float64: the differences are small against the losses
        torch.manual_seed(0)
        model = cls((1, 4, 4), 17, latent_dim=3, hidden=16, beta=beta).to(F64)
        torch.manual_seed(1)
        losses[beta] = model.loss(x).item()
        torch.manual_seed(1)
        reconstruction, kl = model._elbo_terms(x)
        assert losses[beta] == pytest.approx(-(reconstruction - beta * kl).mean().item(), rel=1e-12)
    # loss(β) = -rec + β·KL is affine in β for a fixed draw, with slope the mean KL > 0
    assert losses[2.0] - losses[1.0] == pytest.approx(losses[1.0] - losses[0.0], rel=1e-9)
    assert losses[1.0] > losses[0.0]


@pytest.mark.parametrize("cls", [VAE, VAEIAF])
def test_bounds_do_not_depend_on_the_training_options(cls: type[VAE]) -> None:
    x = torch.randint(0, 17, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float()
    torch.manual_seed(0)
    reference = cls((1, 4, 4), 17, latent_dim=3, hidden=16)
    results = []
    for options in ({}, {"beta": 3.0}, {"beta": 0.0}, {"iwae_k": 8}):
        model = cls((1, 4, 4), 17, latent_dim=3, hidden=16, **options)  # type: ignore[arg-type]
        model.load_state_dict(reference.state_dict())
        torch.manual_seed(5)
        elbo = model.log_prob(x)
        torch.manual_seed(5)
        results.append((elbo, model.log_prob_bound(x, 6)))
    for elbo, bound in results[1:]:
        assert torch.equal(elbo, results[0][0]) and torch.equal(bound, results[0][1])


def test_option_errors_and_defaults() -> None:
    with pytest.raises(ValueError, match=r"beta=0\.5 and iwae_k=4 cannot be combined"):
        VAE((1, 4, 4), 17, beta=0.5, iwae_k=4)
    with pytest.raises(ValueError, match=r"beta=2\.0 and iwae_k=2 cannot be combined"):
        VAEIAF((1, 4, 4), 17, beta=2.0, iwae_k=2)
    with pytest.raises(ValueError, match=r"'iwae_k' must be a positive integer, got 0"):
        VAE((1, 4, 4), 17, iwae_k=0)
    with pytest.raises(ValueError, match=r"latent_dim >= 2.*iaf_steps=0"):
        VAEIAF((2,), None, latent_dim=1)
    with pytest.raises(ValueError, match=r"'iaf_steps' must be an integer >= 0"):
        VAEIAF((2,), None, iaf_steps=-1)
    with pytest.raises(ValueError, match=r"VAEIAF expects inputs of shape"):
        VAEIAF((2,), None).log_prob(torch.zeros(3, 3))
    VAEIAF((2,), None, latent_dim=1, iaf_steps=0)  # a 1-D latent is fine without steps
    assert model_options(VAE) == {"latent_dim": 16, "hidden": 256, "layers": 2, "beta": 1.0, "iwae_k": 1}
    assert model_options(VAEIAF) == {
        **model_options(VAE),
        "iaf_steps": 2,
        "iaf_hidden": 64,
        "context_dim": 16,
    }
    model = VAEIAF((1, 8, 8), 17)
    assert model.exact is False and model.discrete is True and len(model.iaf) == 2
    assert VAEIAF((2,), None).discrete is False


# --- extremes, samples, gradients ------------------------------------------------------------


@pytest.mark.parametrize(("shape", "levels"), [((1, 8, 8), 17), ((1, 14, 14), 256)])
@pytest.mark.parametrize("options", [{}, {"iwae_k": 4}])
def test_iaf_extreme_images_finite_and_gradients_flow(
    shape: tuple[int, ...], levels: int, options: dict[str, int]
) -> None:
    torch.manual_seed(0)
    model = VAEIAF(shape, levels, **options)  # type: ignore[arg-type]
    randomise(model.iaf, std=0.1)
    for x in (torch.zeros(2, *shape), torch.full((2, *shape), levels - 1.0)):
        assert torch.isfinite(model.log_prob(x)).all()
        assert torch.isfinite(model.log_prob_bound(x, 3)).all()
        model.zero_grad()
        loss = model.loss(x)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
        assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
        for part in ("encoder.", "decoder.", "iaf.0.", "iaf.1."):
            assert any(g.abs().sum() > 0 for name, g in grads.items() if name.startswith(part)), part
