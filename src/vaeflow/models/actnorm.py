"""Activation normalisation (Kingma & Dhariwal 2018, "Glow", §3.1, Table 1 row 1).

``y = s ⊙ (x + b)`` with one scale and one bias per channel, ``s = exp(log_scale)``;
``log|det ∂y/∂x| = H·W·Σ_c log|s_c|`` per example for images ``(B, C, H, W)`` and
``Σ_c log|s_c|`` for vectors ``(B, C)``. Data-dependent initialisation: on the first batch
``b = -mean`` and ``s = 1/(std + ε)`` per channel, so that the post-actnorm activations of that
batch have zero mean and unit variance. An ``initialized`` buffer records that this happened;
it travels with the ``state_dict``, so a model loaded from a checkpoint is never re-initialised.
The forward pass never initialises by itself: a density must not depend on which batch it
saw first, so the caller (:meth:`vaeflow.models.base.DensityModel.initialize`) does it once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaeflow.models.transforms import Bijection


class ActNorm(Bijection):
    """Per-channel affine map ``y = exp(log_scale) ⊙ (x + bias)`` with data-dependent init (Glow §3.1).

    The scale is stored as its logarithm, so ``s > 0`` always and ``log|s|`` is the parameter.
    Before :meth:`initialize` the map is the identity (``b = 0``, ``s = 1``).
    """

    def __init__(self, num_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        if int(num_features) != num_features or num_features < 1:
            raise ValueError(f"ActNorm: num_features must be a positive integer, got {num_features!r}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.bias = nn.Parameter(torch.zeros(self.num_features))
        self.log_scale = nn.Parameter(torch.zeros(self.num_features))
        self.register_buffer("initialized", torch.tensor(False))

    def _check(self, x: Tensor) -> None:
        if x.dim() not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(
                f"ActNorm({self.num_features}) expects (B, {self.num_features}) or (B, {self.num_features}, H, W) "
                f"inputs, got {tuple(x.shape)}"
            )

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, 1, 1) if x.dim() == 4 else p.view(1, -1)

    @staticmethod
    def _positions(x: Tensor) -> int:
        """Number of positions sharing one channel's scale per example: ``H·W`` or 1."""
        return x.shape[2] * x.shape[3] if x.dim() == 4 else 1

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set ``b = -mean``, ``s = 1/(std + ε)`` per channel from batch ``x``; a no-op once initialised."""
        self._check(x)
        if bool(self.initialized):
            return
        per_channel = x.transpose(0, 1).reshape(self.num_features, -1)
        mean = per_channel.mean(1)
        if per_channel.shape[1] > 1:
            log_scale = -torch.log(per_channel.std(1, unbiased=False) + self.eps)
        else:  # one value per channel (a batch of one vector): centre only, as 1/(0 + ε) would be absurd
            log_scale = torch.zeros_like(mean)
        self.bias.copy_(-mean)
        self.log_scale.copy_(log_scale)
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        y = (x + self._view(self.bias, x)) * self._view(self.log_scale, x).exp()
        logdet = (self._positions(x) * self.log_scale.sum()).expand(x.shape[0])
        return y, logdet

    def inverse(self, z: Tensor) -> Tensor:
        self._check(z)
        return z * self._view(-self.log_scale, z).exp() - self._view(self.bias, z)
