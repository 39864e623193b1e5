"""Affine coupling layers of Real NVP (Dinh et al. 2017, §3.3–3.4, eq. 7–9).

``y = b⊙x + (1-b)⊙(x⊙exp(s(b⊙x)) + t(b⊙x))``, ``log|det ∂y/∂x| = Σ (1-b)⊙s``, with a binary
mask ``b``: checkerboard or channel-wise for images, alternating halves for vectors.
The log-scale is bounded, ``s = scale·tanh(raw)``, with a learnable per-channel ``scale``
(initialised to 1), so one layer can never multiply by more than ``exp(scale)``; this is the
stabiliser of the authors' released code. The conditioner's last layer is zero-initialised,
so every coupling starts as the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaeflow.models.precision import full_precision, sum_per_example
from vaeflow.models.transforms import Bijection


def checkerboard_mask(channels: int, height: int, width: int, parity: int) -> Tensor:
    """``b[c, i, j] = 1`` where ``(i + j + parity)`` is even (Dinh et al. 2017, Fig. 3 left)."""
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    pattern = ((rows + cols + parity) % 2 == 0).to(torch.get_default_dtype())
    return pattern.expand(channels, height, width).clone()


def channel_mask(channels: int, height: int, width: int, parity: int) -> Tensor:
    """``b = 1`` on the first half of the channels (parity 0) or the second half (parity 1) (Fig. 3 right)."""
    if channels < 2:
        raise ValueError(f"a channel-wise coupling needs at least 2 channels, got {channels}")
    keep = torch.arange(channels) < channels // 2
    if parity % 2:
        keep = ~keep
    return keep.to(torch.get_default_dtype()).view(-1, 1, 1).expand(channels, height, width).clone()


def half_mask(dim: int, parity: int) -> Tensor:
    """Vector mask: ``b = 1`` on the first ``⌈D/2⌉`` coordinates (parity 0) or the rest (parity 1)."""
    if dim < 2:
        raise ValueError(f"a vector coupling needs at least 2 dimensions, got {dim}")
    keep = torch.arange(dim) < (dim + 1) // 2
    if parity % 2:
        keep = ~keep
    return keep.to(torch.get_default_dtype())


class ResidualBlock(nn.Module):
    """``h + conv3x3(relu(conv3x3(relu(h))))`` (He et al. 2016, pre-activation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ConvNet(nn.Module):
    """Conditioner for images: 3x3 conv → residual blocks → ReLU → zero-initialised 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, res_blocks: int) -> None:
        super().__init__()
        last = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            *[ResidualBlock(hidden) for _ in range(res_blocks)],
            nn.ReLU(),
            last,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MLP(nn.Module):
    """Conditioner for vectors: ``layers`` ReLU hidden layers of width ``hidden``, zero-initialised output."""

    def __init__(self, in_features: int, out_features: int, hidden: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_features
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        last = nn.Linear(width, out_features)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*blocks, last)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class AffineCoupling(Bijection):
    """Real NVP affine coupling (Dinh et al. 2017, eq. 9) with a fixed binary ``mask``.

    ``mask`` has the event shape, ``(C, H, W)`` or ``(D,)``. ``net`` maps the conditioner input
    ``b⊙x`` (with the mask's first channel appended when ``append_mask``) to ``2·C`` channels
    (or ``2·D`` features): the raw log-scale and the shift.
    """

    def __init__(self, mask: Tensor, net: nn.Module, append_mask: bool = False) -> None:
        super().__init__()
        if mask.dim() not in (1, 3):
            raise ValueError(f"mask must have shape (C, H, W) or (D,), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask)
        self.net = net
        self.append_mask = append_mask
        scale_shape = (mask.shape[0], 1, 1) if mask.dim() == 3 else (mask.shape[0],)
        self.scale = nn.Parameter(torch.ones(scale_shape))

    def _scale_and_shift(self, x_masked: Tensor) -> tuple[Tensor, Tensor]:
        inputs = x_masked
        if self.append_mask:
            channel = self.mask[:1].to(x_masked.dtype).expand(x_masked.shape[0], 1, *self.mask.shape[1:])
            inputs = torch.cat([x_masked, channel], dim=1)
        raw_s, t = full_precision(self.net(inputs)).chunk(2, dim=1)  # float32 under autocast
        free = 1.0 - self.mask
        return free * self.scale * torch.tanh(raw_s), free * t

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_masked = x * self.mask
        s, t = self._scale_and_shift(x_masked)
        z = x_masked + (1.0 - self.mask) * (x * torch.exp(s) + t)
        return z, sum_per_example(s)

    def inverse(self, z: Tensor) -> Tensor:
        z_masked = z * self.mask
        s, t = self._scale_and_shift(z_masked)
        return z_masked + (1.0 - self.mask) * (z - t) * torch.exp(-s)


def checkerboard_coupling(
    channels: int, height: int, width: int, parity: int, hidden: int, res_blocks: int
) -> AffineCoupling:
    """Checkerboard-masked image coupling; the mask is appended to the conditioner input."""
    mask = checkerboard_mask(channels, height, width, parity)
    return AffineCoupling(mask, ConvNet(channels + 1, 2 * channels, hidden, res_blocks), append_mask=True)


def channel_coupling(
    channels: int, height: int, width: int, parity: int, hidden: int, res_blocks: int
) -> AffineCoupling:
    """Channel-masked image coupling (used after a squeeze)."""
    mask = channel_mask(channels, height, width, parity)
    return AffineCoupling(mask, ConvNet(channels, 2 * channels, hidden, res_blocks))


def vector_coupling(dim: int, parity: int, hidden: int, layers: int) -> AffineCoupling:
    """Half-masked vector coupling with an MLP conditioner."""
    return AffineCoupling(half_mask(dim, parity), MLP(dim, 2 * dim, hidden, layers))
