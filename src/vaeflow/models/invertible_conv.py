"""Invertible 1x1 convolution, LU-decomposed (Kingma & Dhariwal 2018, "Glow", §3.2, eq. 10).

A learned ``C x C`` channel-mixing matrix applied at every pixel, ``y_{:,i,j} = W x_{:,i,j}``,
parameterised as ``W = P L (U + diag(sign(s)·exp(log|s|)))``: ``P`` a fixed permutation,
``L`` unit lower-triangular, ``U`` strictly upper-triangular. Then
``log|det ∂y/∂x| = H·W·Σ log|s|`` costs ``O(C)`` instead of ``O(C³)``. ``W`` starts as a random
rotation (QR of a Gaussian matrix), whose LU factors give ``P``, ``L``, ``U``, ``s``; ``P`` and
``sign(s)`` stay fixed (they are buffers and travel with the ``state_dict``). On vectors
``(B, C)`` the same map is the linear layer ``y = W x`` (``H·W = 1``).

Under mixed precision the product runs in float32 (autocast off for it): the log-det is computed
from the float32 factors, so the map applied must be ``W`` itself, not ``W`` rounded to bfloat16
(whose determinant differs), and a ``C x C`` product per pixel is cheap next to the couplings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaeflow.models.precision import autocast_off, full_precision
from vaeflow.models.transforms import Bijection


class InvertibleConv1x1(Bijection):
    """LU-parameterised invertible 1x1 convolution / linear map (Glow §3.2, eq. 10).

    Parameters: ``lower`` (strictly lower part of ``L`` used), ``upper`` (strictly upper part
    used), ``log_abs_s``. Buffers: ``permutation`` (``P``), ``sign_s``. The random rotation
    uses the global torch generator, so ``torch.manual_seed`` makes it reproducible.
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        if int(num_channels) != num_channels or num_channels < 1:
            raise ValueError(f"InvertibleConv1x1: num_channels must be a positive integer, got {num_channels!r}")
        c = self.num_channels = int(num_channels)
        rotation, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(rotation)
        s = torch.diagonal(upper)
        dtype = torch.get_default_dtype()
        self.register_buffer("permutation", p.to(dtype))
        self.register_buffer("sign_s", torch.sign(s).to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c, dtype=dtype), -1))
        self.register_buffer("eye", torch.eye(c, dtype=dtype))
        self.lower = nn.Parameter(lower.to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_abs_s = nn.Parameter(torch.log(torch.abs(s)).to(dtype))

    def factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(P, L, U + diag(sign(s)·exp(log|s|)))`` with ``W`` their product."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_abs_s.exp())
        return self.permutation, lower, upper

    def weight(self) -> Tensor:
        """The ``C x C`` matrix ``W = P L (U + diag(sign(s)·exp(log|s|)))``."""
        p, lower, upper = self.factors()
        return p @ lower @ upper

    def inverse_weight(self) -> Tensor:
        """``W⁻¹ = (U + diag s)⁻¹ L⁻¹ Pᵀ`` by two triangular solves (``P`` is orthogonal)."""
        p, lower, upper = self.factors()
        l_inv_pt = torch.linalg.solve_triangular(lower, p.T, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, l_inv_pt, upper=True)

    def _check(self, x: Tensor) -> None:
        if x.dim() not in (2, 4) or x.shape[1] != self.num_channels:
            raise ValueError(
                f"InvertibleConv1x1({self.num_channels}) expects (B, {self.num_channels}) or "
                f"(B, {self.num_channels}, H, W) inputs, got {tuple(x.shape)}"
            )

    @staticmethod
    def _multiply(matrix: Tensor, x: Tensor) -> Tensor:
        if x.dim() == 4:
            return F.conv2d(x, matrix.view(*matrix.shape, 1, 1))
        return x @ matrix.T

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        positions = x.shape[2] * x.shape[3] if x.dim() == 4 else 1
        logdet = (positions * self.log_abs_s.sum()).expand(x.shape[0])
        with autocast_off(x.device):  # W itself, in float32 (module docstring)
            return self._multiply(self.weight(), full_precision(x)), logdet

    def inverse(self, z: Tensor) -> Tensor:
        self._check(z)
        with autocast_off(z.device):
            return self._multiply(self.inverse_weight(), full_precision(z))
