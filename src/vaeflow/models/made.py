"""MADE: Masked Autoencoder for Distribution Estimation (Germain et al. 2015).

An MLP whose weight masks make output ``i`` depend only on the inputs that come before
``i`` in a given ordering: with degrees ``m(x_d) = order_d ∈ {1..D}`` for inputs,
``m(h) ∈ {1..D-1}`` for hidden units and output degrees equal to the input degrees, a
connection ``u → v`` is kept when ``m(v) ≥ m(u)`` (hidden) or ``m(v) > m(u)`` (output)
(eqs. 12–13). The autoregressive building block of MAF, IAF and VAE-IAF.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed binary mask ``(out, in)``."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def inversion_passes(hidden_degrees: Tensor, features: int) -> int:
    """How many sequential passes make ``v ← solve(w, MADE(v))`` exact, from any start: at most ``D``.

    With every hidden layer on the same degrees ``H``, output ``i`` (degree ``p``) reads input ``j``
    exactly when some ``d ∈ H`` has ``m(x_j) ≤ d < p``: it reads every input of degree up to
    ``m(p) = max{d ∈ H : d < p}`` and nothing else. Inputs of degree ``≤ min H`` are read by no
    output, so the first pass makes every output whose ``m(p)`` is undefined exact; after pass ``t``
    the degrees whose inputs were exact after pass ``t − 1`` are exact. The count is the length of
    the chain ``D → m(D) → m(m(D)) → …``: ``D`` when ``H`` holds every degree ``1..D−1`` (a MADE
    at least ``D − 1`` wide), far fewer for a narrow one, whose hidden units see inputs only in
    coarse groups (14×14 images with 32 hidden units: 33 passes instead of 196).
    """
    degrees = sorted(set(int(d) for d in hidden_degrees.tolist()))
    passes, p = 1, int(features)
    while True:
        below = [d for d in degrees if d < p]
        if not below:
            return passes
        p, passes = below[-1], passes + 1


class MADE(nn.Module):
    """Autoregressive MLP: ``forward(x, context) → (B, outputs_per_dim, D)``.

    ``order`` is a permutation of ``0..D-1``: ``order[d]`` is the position of input ``d``
    in the autoregressive ordering (default: the identity). An optional ``context`` (e.g.
    an encoder's ``h`` in VAE-IAF) enters the first hidden layer unmasked, so every output
    may depend on it. ``zero_init`` zeroes the output layer, so a flow built on it starts
    at the identity.
    """

    def __init__(
        self,
        features: int,
        hidden: int,
        layers: int = 2,
        outputs_per_dim: int = 2,
        context_features: int = 0,
        order: Tensor | None = None,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"MADE needs at least 2 features, got {features}")
        if layers < 1 or hidden < 1:
            raise ValueError(f"MADE needs layers >= 1 and hidden >= 1, got layers={layers}, hidden={hidden}")
        self.features, self.outputs_per_dim = features, outputs_per_dim
        order = torch.arange(features) if order is None else torch.as_tensor(order)
        if sorted(order.tolist()) != list(range(features)):
            raise ValueError(f"MADE order must be a permutation of 0..{features - 1}, got {order.tolist()}")
        degrees_in = order + 1  # 1..D
        self.register_buffer("degrees_in", degrees_in)
        if hidden >= features - 1:
            hidden_degrees = torch.arange(hidden) % (features - 1) + 1  # every degree 1..D-1, cycled
        else:  # fewer units than degrees: spread them over 1..D-1 so late inputs still feed outputs
            hidden_degrees = torch.linspace(1, features - 1, hidden).round().long()
        blocks: list[nn.Module] = []
        previous = degrees_in
        for layer in range(layers):
            mask = (hidden_degrees[:, None] >= previous[None, :]).float()
            blocks.append(MaskedLinear(features if layer == 0 else hidden, hidden, mask))
            previous = hidden_degrees
        self.hidden_layers = nn.ModuleList(blocks)
        self.inversion_passes = inversion_passes(hidden_degrees, features)
        output_degrees = degrees_in.repeat(outputs_per_dim)
        out_mask = (output_degrees[:, None] > previous[None, :]).float()
        self.output = MaskedLinear(hidden, features * outputs_per_dim, out_mask)
        self.context = nn.Linear(context_features, hidden) if context_features else None
        if zero_init:
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.hidden_layers[0](x)
        if self.context is not None:
            if context is None:
                raise ValueError("this MADE was built with context_features > 0; pass a context")
            h = h + self.context(context)
        h = F.relu(h)
        for layer in self.hidden_layers[1:]:
            h = F.relu(layer(h))
        out = self.output(h)
        return out.reshape(x.shape[0], self.outputs_per_dim, self.features)
