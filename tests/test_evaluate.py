"""The evaluation's headline for a flow on images, IW-uniform-k, against brute force.

A small MAF on 2-pixel images with 4 grey levels is a density ``p`` of dequantised levels, so its
discrete likelihood ``P(x) = ∫_{[0,1)^2} p(x + u) du`` is a 2-D integral, computed on a midpoint
grid: the grid's ``P`` sums to one over the 16 images, the IW-uniform bound stays below ``log P``
and approaches it as ``k`` grows, and above the single-draw bound ``E_u[log p(x + u)]``. Seeded.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from brute_force import randomise
from vaeflow.data import PreparedDataset
from vaeflow.evaluation.evaluate import _per_example, evaluate, uniform_iw_applies
from vaeflow.models import build_model

LEVELS = 4
IMAGES = torch.tensor([[a, b] for a in range(LEVELS) for b in range(LEVELS)], dtype=torch.float64).view(-1, 1, 1, 2)


@pytest.fixture(scope="module")
def flow():
    torch.manual_seed(0)
    model = build_model("maf", (1, 1, 2), LEVELS, {"blocks": 2, "hidden": 8, "layers": 1}).double()
    randomise(model, std=0.3, seed=1)
    return model.eval()


def grid_log_p(model, x: torch.Tensor, n: int = 400) -> torch.Tensor:
    """``log ∫ p(x + u) du`` per image by the midpoint rule on an ``n × n`` grid of the unit square."""
    mid = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    u = torch.cartesian_prod(mid, mid).view(-1, 1, 1, 2)
    with torch.no_grad():
        return torch.stack([torch.logsumexp(model.log_prob(xi + u), 0) - 2 * math.log(n) for xi in x])


def test_the_grid_integral_has_converged_and_is_a_sub_probability(flow):
    """The logit pre-processing maps the level cube onto a bounded box, so ``Σ_x P(x)`` is the base mass
    of the box's image: at most one (here, with random parameters, well below it)."""
    coarse, fine = grid_log_p(flow, IMAGES, 200), grid_log_p(flow, IMAGES, 400)
    torch.testing.assert_close(coarse, fine, atol=2e-4, rtol=0)
    assert 0.1 < fine.exp().sum().item() <= 1.0


def test_iw_uniform_lies_between_the_single_draw_bound_and_log_p_and_tightens_with_k(flow):
    exact = grid_log_p(flow, IMAGES)
    with torch.no_grad():
        draws = torch.stack(
            [flow.log_prob(IMAGES + torch.rand(IMAGES.shape, dtype=torch.float64)) for _ in range(4000)]
        )
    jensen = draws.mean(0)  # E_u[log p(x + u)], the single-draw bound
    expected = {}  # E[IW-uniform-k] per image: the mean of repeated estimates with other draws
    for k, repeats in ((10, 200), (100, 40), (3000, 4)):
        runs = torch.stack(
            [_per_example(flow, IMAGES, LEVELS, k, r, 16, "log_prob", combine="logmeanexp") for r in range(repeats)]
        )
        expected[k], se = runs.mean(0), runs.std(0) / math.sqrt(repeats)
        # a lower bound: no image's estimate above log P(x) by more than its Monte-Carlo error
        assert (expected[k] <= exact + 4 * se + 1e-3).all(), (k, ((expected[k] - exact) / se).max())
    gaps = {k: (exact - value).mean().item() for k, value in expected.items()}
    assert (exact - jensen).mean().item() > 0.05  # the single-draw bound is loose here
    # tighter with k, and at large k within Monte-Carlo noise of log P(x)
    assert (exact - jensen).mean().item() > gaps[10] > max(gaps[100], gaps[3000]), gaps
    assert abs(gaps[100]) < 0.005 and abs(gaps[3000]) < 0.002, gaps


def test_evaluation_reports_iw_uniform_as_the_flows_headline_on_images(flow):
    rng = np.random.default_rng(0)
    levels = rng.integers(0, LEVELS, size=(40, 1, 1, 2)).astype(np.uint8)
    data = PreparedDataset("tiny", LEVELS, levels, levels[:10], levels[:20], None, None, None, {}, 0, "test")
    model = flow.float()
    settings = {"iwae_k": 50, "dequantization_draws": 2, "batch_size": 8, "samples": 4, "seed": 0, "train_examples": 10}
    assert uniform_iw_applies(model, LEVELS) and not uniform_iw_applies(model, None)
    metrics, _, scores = evaluate(model, data, settings)
    test = metrics["test"]
    assert test["bound"] == "iw-uniform-50" and test["iwae"]["k"] == 50
    assert test["bits_per_dim"] == test["iwae"]["bits_per_dim"] <= test["single_draw_bits_per_dim"]
    per_example = -scores["log_likelihood"] / (2 * math.log(2))
    assert per_example.mean() == pytest.approx(test["bits_per_dim"], rel=1e-9)
    assert metrics["val"]["bound"] == "exact density of uniformly dequantised data"  # the single draw
    flow.double()
