"""The NICE example model (docs/adding.md): its log-det is the log-determinant of the autograd
Jacobian, it inverts, and on 2-D its density integrates to one on a grid. Seeded."""

import math

import torch

from vaeflow.models import build_model


def test_logdet_is_the_jacobians_and_the_flow_inverts():
    torch.manual_seed(0)
    model = build_model("nice", (4,), None, {"couplings": 3, "hidden": 8}).double()
    for p in model.parameters():  # off the initial values
        p.data.normal_(0.0, 0.5)
    y = torch.randn(3, 4, dtype=torch.float64)
    z, logdet = model.forward_and_logdet(y)
    for i in range(3):
        jacobian = torch.autograd.functional.jacobian(lambda v: model.forward_and_logdet(v[None])[0][0], y[i])
        assert math.isclose(torch.linalg.slogdet(jacobian)[1].item(), logdet[i].item(), abs_tol=1e-9)
    torch.testing.assert_close(model.inverse(z), y, atol=1e-10, rtol=0)


def test_the_density_integrates_to_one_on_a_grid():
    torch.manual_seed(1)
    model = build_model("nice", (2,), None, {"couplings": 2, "hidden": 8}).double()
    with torch.no_grad():
        model.log_scale.fill_(-0.5)
        axis = torch.linspace(-12.0, 12.0, 601, dtype=torch.float64)
        grid = torch.cartesian_prod(axis, axis)
        mass = model.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(mass.item() - 1.0) < 1e-3
