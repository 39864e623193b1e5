"""MADE's masks make it autoregressive: checked on the full autograd Jacobian."""

import pytest
import torch

from vaeflow.models.made import MADE


@pytest.mark.parametrize("order", [None, [3, 0, 4, 1, 5, 2]])
@pytest.mark.parametrize("context", [0, 3])
def test_output_depends_only_on_earlier_inputs(order, context):
    torch.manual_seed(0)
    made = MADE(
        6,
        hidden=17,
        layers=2,
        outputs_per_dim=2,
        context_features=context,
        order=None if order is None else torch.tensor(order),
        zero_init=False,
    ).double()
    x = torch.randn(1, 6, dtype=torch.float64)
    c = torch.randn(1, context, dtype=torch.float64) if context else None
    jac = torch.autograd.functional.jacobian(lambda v: made(v, c)[0], x)[:, :, 0, :]  # (outputs, D, D)
    degrees = torch.arange(6) if order is None else torch.tensor(order)
    allowed = degrees[None, :] < degrees[:, None]  # output i may see input j iff order_j < order_i
    for k in range(2):
        assert torch.all(jac[k][~allowed] == 0)
        assert torch.any(jac[k][allowed] != 0), "the allowed connections are used"


def test_zero_init_outputs_zero_and_context_is_required():
    made = MADE(4, hidden=8, context_features=2)
    assert torch.all(made(torch.randn(3, 4), torch.randn(3, 2)) == 0)
    with pytest.raises(ValueError, match="pass a context"):
        made(torch.randn(3, 4))
    with pytest.raises(ValueError, match="permutation"):
        MADE(3, hidden=4, order=torch.tensor([0, 0, 1]))


@pytest.mark.parametrize(("features", "hidden"), [(6, 17), (64, 16), (256, 128)])
def test_every_input_but_the_last_in_order_reaches_an_output(features, hidden):
    """With fewer hidden units than degrees, the degrees must still span 1..D-1 (not stop at H)."""
    made = MADE(features, hidden=hidden, layers=2, zero_init=False)
    # connectivity of input j to any output: product of the binary masks
    reach = made.output.mask @ made.hidden_layers[1].mask @ made.hidden_layers[0].mask  # (outputs, inputs)
    used = (reach > 0).any(dim=0)
    assert used.sum() == features - 1, f"{features - int(used.sum())} of {features} inputs never reach an output"
    assert not used[features - 1], "the last input in the order conditions nothing"


def _longest_chain(made: MADE) -> int:
    """Brute force: the passes needed, from the product of the binary masks (output i reads input j)."""
    reach = made.output.mask
    for layer in reversed(made.hidden_layers):
        reach = reach @ layer.mask
    reads = (reach.reshape(made.outputs_per_dim, made.features, made.features) > 0).any(dim=0)
    depth = [0] * made.features
    for i in sorted(range(made.features), key=lambda d: int(made.degrees_in[d])):  # in autoregressive order
        depth[i] = 1 + max((depth[j] for j in range(made.features) if reads[i, j]), default=0)
    return max(depth)


@pytest.mark.parametrize(
    ("features", "hidden", "layers"),
    [(6, 17, 2), (6, 5, 2), (64, 74, 2), (196, 32, 2), (256, 25, 3), (30, 4, 1), (2, 1, 2)],
)
def test_inversion_passes_is_the_longest_dependency_chain(features, hidden, layers):
    order = torch.randperm(features, generator=torch.Generator().manual_seed(features))
    made = MADE(features, hidden=hidden, layers=layers, order=order)
    assert made.inversion_passes == _longest_chain(made)
    assert (made.inversion_passes == features) == (hidden >= features - 1)
