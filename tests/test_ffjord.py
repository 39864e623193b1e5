"""FFJORD against brute force: autograd Jacobians of the solved map, grid integrals, Monte Carlo
means of the Hutchinson estimator, analytic densities of the zero flow, finite differences."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from brute_force import dequantised_levels, randomise
from vaeflow.models.distributions import standard_normal_log_prob
from vaeflow.models.ffjord import FFJORD, trace_probes

F64 = torch.float64
TIGHT = {"atol": 1e-9, "rtol": 1e-9, "eval_atol": 1e-9, "eval_rtol": 1e-9}


def vector_flow(dim: int, seed: int = 0, std: float = 0.3, **options: object) -> FFJORD:
    torch.manual_seed(seed)
    model = FFJORD((dim,), None, **{"hidden": 16, "layers": 2, **TIGHT, **options})  # type: ignore[arg-type]
    return randomise(model.to(F64), std=std, seed=seed)  # type: ignore[return-value]


def image_flow(seed: int = 0, std: float = 0.1, **options: object) -> FFJORD:
    torch.manual_seed(seed)
    model = FFJORD((1, 4, 4), 17, **{"hidden_channels": 8, "layers": 2, **TIGHT, **options})  # type: ignore[arg-type]
    return randomise(model.to(F64), std=std, seed=seed)  # type: ignore[return-value]


CASES = {
    "vector-2": lambda: (
        vector_flow(2),
        2.0 * torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=F64),
    ),
    "vector-6-two-blocks": lambda: (
        vector_flow(6, blocks=2, time_length=0.7, train_time=True),
        torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=F64),
    ),
    "image-1x4x4": lambda: (image_flow(), dequantised_levels((3, 1, 4, 4), 17)),
}


# --- the map and its log-det -----------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_forward_then_backward_is_identity(case: str) -> None:
    model, x = CASES[case]()
    with torch.no_grad():
        z = model.transform(x)
        assert (z - x.flatten(1)).abs().max() > 0.05, "randomised dynamics should move the points"
        x_back = model.inverse(z)
    assert ((x_back - x).abs().max() / x.abs().max()).item() < 1e-4


@pytest.mark.parametrize("case", ["vector-6-two-blocks", "image-1x4x4"])
def test_exact_trace_logdet_equals_autograd_jacobian(case: str) -> None:
    model, x = CASES[case]()
    with torch.no_grad():
        z, logdet = model.forward_and_logdet(x, trace="exact")
        torch.testing.assert_close(z, model.transform(x), rtol=0, atol=1e-7)
    cnf_part = logdet - (model.preprocess(x)[1] if model.preprocess is not None else 0.0)
    assert cnf_part.abs().min() > 0.01, "the CNF's own log-det should be far from zero"
    for i in range(x.shape[0]):
        shape = x[i : i + 1].shape
        jac = jacobian(lambda v, shape=shape: model.transform(v.reshape(shape)).reshape(-1), x[i].reshape(-1))
        brute = torch.linalg.slogdet(jac)[1]
        assert logdet[i].item() == pytest.approx(brute.item(), abs=1e-4)
    # log p = log N(z) + log|det|, deterministic in evaluation, and log_prob_bound equals it
    with torch.no_grad():
        log_p = model.log_prob(x)
        torch.testing.assert_close(log_p, standard_normal_log_prob(z) + logdet)
        assert torch.equal(model.log_prob(x), log_p)
        assert torch.equal(model.log_prob_bound(x, 100), log_p)


def test_trace_probes_partition_and_respect_the_receptive_field() -> None:
    # every coordinate in exactly one probe; 5x5 colouring for radius 4 on a large image
    probes = trace_probes((2, 12, 11), receptive_radius=4)
    assert probes.shape == (2 * 25, 2, 12, 11)
    torch.testing.assert_close(probes.sum(0), torch.ones(2, 12, 11))
    # and the colouring is exact: the Jacobian of the conv dynamics vanishes between two pixels of one probe
    model = randomise(FFJORD((1, 7, 7), 17, hidden_channels=4, layers=1).to(F64), std=0.2)  # radius 2 → 3x3 colours
    dynamics = model.blocks[0].dynamics
    probes = trace_probes((1, 7, 7), dynamics.receptive_radius).reshape(9, -1)
    z = torch.randn(1, 1, 7, 7, dtype=F64)
    jac = jacobian(lambda v: dynamics(torch.tensor(0.3, dtype=F64), v.reshape(1, 1, 7, 7)).reshape(-1), z.reshape(-1))
    for mask in probes.bool():
        block = jac[mask][:, mask]
        assert torch.equal(block - torch.diag(torch.diagonal(block)), torch.zeros_like(block))
    assert (jac.abs() > 0).sum() > 49 * 9, "the dynamics should couple neighbouring pixels"


@pytest.mark.parametrize("case", ["vector-6", "image-1x4x4"])
@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(case: str, noise: str) -> None:
    if case == "vector-6":
        model, x = vector_flow(6, noise=noise), torch.randn(1, 6, generator=torch.Generator().manual_seed(4), dtype=F64)
    else:
        model, x = image_flow(noise=noise), dequantised_levels((1, 1, 4, 4), 17, seed=4)
    n = 1000
    torch.manual_seed(0)
    with torch.no_grad():
        exact = model.forward_and_logdet(x, trace="exact")[1].item()
        # each row of one solve draws its own ε, held fixed over the solve
        estimates = model.forward_and_logdet(x.expand(n, *x.shape[1:]), trace="hutchinson")[1]
    sem = estimates.std().item() / math.sqrt(n)
    assert sem > 1e-4, "the Hutchinson estimates should vary with ε"
    assert abs(estimates.mean().item() - exact) < 4 * sem, (estimates.mean().item(), exact, sem)


class _Swap(nn.Module):
    """``f(t, z) = c·(z₂, z₁)``: a trace-free linear field whose Hutchinson estimate is ``±2cT`` for one fixed ε."""

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return 0.3 * z.flip(1)


def test_hutchinson_noise_is_held_fixed_within_a_solve() -> None:
    model = FFJORD((2,), None, hidden=4, time_length=1.5).to(F64)
    model.blocks[0].dynamics = _Swap()
    torch.manual_seed(0)
    with torch.no_grad():
        _, logdet = model.forward_and_logdet(torch.randn(200, 2, dtype=F64), trace="hutchinson")
        _, exact = model.forward_and_logdet(torch.randn(3, 2, dtype=F64), trace="exact")
    assert model.diagnostics()["nfe_eval"] > 2  # several evaluations per solve
    # εᵀAε = ±2·0.3 per unit time for ε ∈ {±1}²; a fresh ε per evaluation would average towards 0
    torch.testing.assert_close(logdet.abs(), torch.full_like(logdet, 2 * 0.3 * 1.5), rtol=0, atol=1e-6)
    assert (logdet > 0).any() and (logdet < 0).any()
    torch.testing.assert_close(exact, torch.zeros_like(exact), rtol=0, atol=1e-12)


# --- densities ----------------------------------------------------------------------------------


def _zero_output_layers(model: FFJORD) -> FFJORD:
    randomise(model, std=0.3)
    for block in model.blocks:
        block.dynamics.layers[-1].zero_()
    return model


def test_zero_dynamics_give_standard_normal_density() -> None:
    model = _zero_output_layers(FFJORD((3,), None, hidden=8, blocks=2).to(F64))
    x = 2 * torch.randn(50, 3, dtype=F64)
    by_hand = -0.5 * x.square().sum(1) - 1.5 * math.log(2 * math.pi)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), by_hand)
    torch.testing.assert_close(model.loss(x), -by_hand.mean())


def test_zero_dynamics_image_is_logit_preprocess_plus_normal() -> None:
    levels, alpha = 256, 0.05
    model = _zero_output_layers(FFJORD((1, 4, 4), levels, hidden_channels=4, logit_alpha=alpha).to(F64))
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
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(y), by_hand)
    torch.testing.assert_close(model.loss(y), -by_hand.mean())


# --- training: gradients, adjoint, counters -------------------------------------------------------


def test_loss_gradient_matches_finite_differences() -> None:
    # exact-trace training loss in float64: the double-backward path through the trace and T
    model = vector_flow(2, std=0.3, trace="exact", train_time=True, time_length=0.8)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    params = [model.blocks[0].log_time_length, model.blocks[0].dynamics.layers[0].linear.weight]
    grads = torch.autograd.grad(model.loss(x), params)
    for p, g in zip(params, grads):
        index = (0, 1) if p.dim() == 2 else ()
        h = 1e-5
        with torch.no_grad():
            p[index] += h
            up = model.loss(x).item()
            p[index] -= 2 * h
            down = model.loss(x).item()
            p[index] += h
        assert g[index].item() == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-7)


def test_adjoint_gradients_equal_direct_backprop() -> None:
    results = []
    for adjoint in (False, True):
        model = image_flow(adjoint=adjoint, train_time=True)
        y = dequantised_levels((3, 1, 4, 4), 17)
        torch.manual_seed(7)  # the same ε in both runs
        loss = model.loss(y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        results.append((loss.detach(), grads, model.diagnostics()))
    (loss_d, grads_d, diag_d), (loss_a, grads_a, diag_a) = results
    torch.testing.assert_close(loss_a, loss_d, rtol=1e-7, atol=1e-7)
    for a, d in zip(grads_a, grads_d):
        torch.testing.assert_close(a, d, rtol=1e-5, atol=1e-6)
    assert diag_d["nfe_forward"] > 0 and diag_d["nfe_backward"] == 0
    assert diag_a["nfe_forward"] > 0 and diag_a["nfe_backward"] > 0


def test_nfe_recorded_and_fixed_grid_counts() -> None:
    model = randomise(FFJORD((2,), None, hidden=8, blocks=2, solver="rk4", solver_steps=3, train_time=False), std=0.3)
    diagnostics = model.diagnostics()
    assert diagnostics["nfe_forward"] == 0 and diagnostics["train_solves"] == 0
    assert all(isinstance(v, float) and math.isfinite(v) for v in diagnostics.values())
    model.loss(torch.randn(5, 2)).backward()
    with torch.no_grad():
        model.log_prob(torch.randn(5, 2))
    diagnostics = model.diagnostics()
    assert diagnostics["nfe_forward"] == 2 * 3 * 4  # blocks × steps × RK4 stages
    assert diagnostics["nfe_eval"] > 0 and diagnostics["eval_solves"] == 1
    assert diagnostics["time_length_1"] == pytest.approx(0.5)  # the default T (FFJORD's)


def test_log_prob_above_exact_trace_max_dim_is_stochastic() -> None:
    model = vector_flow(4, exact_trace_max_dim=3)
    x = torch.randn(2, 4, dtype=F64)
    with torch.no_grad():
        assert not torch.equal(model.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize(("shape", "levels"), [((1, 8, 8), 17), ((1, 14, 14), 256)])
def test_extreme_images_finite_and_gradients_flow(shape: tuple[int, ...], levels: int) -> None:
    torch.manual_seed(0)
    model = randomise(FFJORD(shape, levels, hidden_channels=8, solver="rk4", solver_steps=2), std=0.05)
    for value in (0.0, levels - 1.0):
        x = torch.full((2, *shape), value)
        inputs = torch.cat([x, x + torch.rand_like(x) * 0.999])
        with torch.no_grad():
            assert torch.isfinite(model.log_prob(inputs)).all()
        model.zero_grad()
        loss = model.loss(inputs)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert all(g.abs().sum() > 0 for g in grads)
    assert model.diagnostics()["nfe_eval"] > 0


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="'solver'.*dopri5"):
        FFJORD((2,), None, solver="dopri7")
    with pytest.raises(ValueError, match="'trace'"):
        FFJORD((2,), None, trace="brute")
    with pytest.raises(ValueError, match="'activation'.*smooth"):
        FFJORD((2,), None, activation="relu")
    with pytest.raises(ValueError, match=r"data_shape must be \(C, H, W\)"):
        FFJORD((2, 3), None)


def test_stiff_solve_fails_with_advice() -> None:
    model = randomise(FFJORD((2,), None, hidden=8, max_num_steps=2, eval_atol=1e-10, eval_rtol=1e-10), std=1.0)
    with pytest.raises(RuntimeError, match="max_num_steps=2.*Loosen atol/rtol"):
        model.log_prob(torch.randn(4, 2))
