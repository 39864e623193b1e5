"""Real NVP (Dinh et al. 2017): affine couplings, multi-scale architecture, standard normal base.

Images (``data_shape = (C, H, W)``) take dequantised levels ``y ∈ [0, K)^D`` (level units, see
:mod:`vaeflow.models.base`): :class:`LogitPreprocess` first (its log-det holds ``-D·log K``),
then per scale (§3.6) three checkerboard couplings of alternating parity, a squeeze, three
channel-wise couplings of alternating parity, and half of the channels factored out to the
base; the last scale has four checkerboard couplings. Batch normalisation of the paper is
left out so that a density never depends on the other examples of a batch.

Vectors (``data_shape = (D,)``, toy densities, ``levels = None``) use ``coupling_layers``
alternating-half MLP couplings. Whenever ``levels`` is given the inputs are dequantised levels
and :class:`LogitPreprocess` comes first, whatever the shape. In every case
``log p(y) = Σ log N(z; 0, I) + log|det ∂z/∂y|`` (eq. 3).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaeflow.models.base import DensityModel
from vaeflow.models.coupling import channel_coupling, checkerboard_coupling, vector_coupling
from vaeflow.models.distributions import standard_normal_log_prob
from vaeflow.models.multiscale import REALNVP_SCALES
from vaeflow.models.transforms import Bijection, Compose, LogitPreprocess, Squeeze, to_levels


def _check_positive_int(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"RealNVP option {name!r} must be a positive integer, got {value!r}")


class RealNVP(DensityModel):
    """Real NVP density model; ``exact = True`` (the log-likelihood is exact), ``discrete = False``.

    Options (all keyword, defaults in brackets). Images: ``hidden_channels`` [32] and
    ``res_blocks`` [2] of each coupling's conv net, ``n_scales`` [2], ``logit_alpha`` [0.05].
    Vectors: ``coupling_layers`` [8], ``hidden`` [64] units × ``mlp_layers`` [2] per MLP.
    Options of the other data kind are ignored.
    """

    width_option_images = "hidden_channels"  # the coupling networks' convolutions

    exact = True
    discrete = False

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        *,
        hidden_channels: int = 32,
        res_blocks: int = 2,
        n_scales: int = REALNVP_SCALES.default,
        logit_alpha: float = 0.05,
        coupling_layers: int = 8,
        hidden: int = 64,
        mlp_layers: int = 2,
    ) -> None:
        super().__init__(data_shape, levels)
        if self.levels is not None and self.levels < 2:
            raise ValueError(f"RealNVP: levels must be >= 2 for image data (or None for real data), got {levels!r}")
        # levels given: inputs are dequantised levels, mapped to logit space with the -D·log K term
        self.preprocess: Bijection | None = None if self.levels is None else LogitPreprocess(self.levels, logit_alpha)
        self.scales = nn.ModuleList()
        # event shapes of the pieces of z, in the order they appear in z_flat
        self._z_shapes: list[tuple[int, ...]] = []
        if len(self.data_shape) == 3:
            self._build_image_flow(hidden_channels, res_blocks, n_scales)
        elif len(self.data_shape) == 1:
            for name, value in (("coupling_layers", coupling_layers), ("hidden", hidden), ("mlp_layers", mlp_layers)):
                _check_positive_int(name, value)
            dim = self.data_shape[0]
            self.final = Compose(*[vector_coupling(dim, i % 2, hidden, mlp_layers) for i in range(coupling_layers)])
            self._z_shapes.append(self.data_shape)
        else:
            raise ValueError(
                f"RealNVP: data_shape must be (C, H, W) for images or (D,) for vectors, got {self.data_shape}"
            )

    def _build_image_flow(self, hidden_channels: int, res_blocks: int, n_scales: int) -> None:
        for name, value in (("hidden_channels", hidden_channels), ("n_scales", n_scales)):
            _check_positive_int(name, value)
        if int(res_blocks) != res_blocks or res_blocks < 0:
            raise ValueError(f"RealNVP option 'res_blocks' must be a non-negative integer, got {res_blocks!r}")
        channels, height, width = self.data_shape
        if min(height, width) < 2:
            raise ValueError(f"RealNVP: images must be at least 2x2 for checkerboard couplings, got data_shape {self.data_shape}")
        REALNVP_SCALES.check(n_scales, self.data_shape)  # the rule the study configuration is checked with
        for _ in range(n_scales - 1):
            layers: list[Bijection] = [
                checkerboard_coupling(channels, height, width, i % 2, hidden_channels, res_blocks) for i in range(3)
            ]
            layers.append(Squeeze())
            channels, height, width = 4 * channels, height // 2, width // 2
            layers += [channel_coupling(channels, height, width, i % 2, hidden_channels, res_blocks) for i in range(3)]
            self.scales.append(Compose(*layers))
            channels //= 2
            self._z_shapes.append((channels, height, width))  # the factored-out half
        self.final = Compose(
            *[checkerboard_coupling(channels, height, width, i % 2, hidden_channels, res_blocks) for i in range(4)]
        )
        self._z_shapes.append((channels, height, width))

    def _check_input(self, y: Tensor) -> None:
        if tuple(y.shape[1:]) != self.data_shape:
            raise ValueError(f"RealNVP expects inputs of shape (batch, *{self.data_shape}), got {tuple(y.shape)}")

    def forward_and_logdet(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Map inputs to the flattened base variable ``z_flat (B, D)`` and ``log|det ∂z/∂y|`` ``(B,)``."""
        self._check_input(y)
        logdet = y.new_zeros(y.shape[0])
        h = y
        if self.preprocess is not None:
            h, step = self.preprocess(h)
            logdet = logdet + step
        pieces: list[Tensor] = []
        for scale in self.scales:
            h, step = scale(h)
            logdet = logdet + step
            half = h.shape[1] // 2
            pieces.append(h[:, :half].flatten(1))
            h = h[:, half:]
        h, step = self.final(h)
        pieces.append(h.flatten(1))
        return torch.cat(pieces, dim=1), logdet + step

    def inverse(self, z_flat: Tensor) -> Tensor:
        """Invert :meth:`forward_and_logdet`: ``z_flat (B, D)`` to inputs ``(B, *data_shape)``."""
        sizes = [math.prod(shape) for shape in self._z_shapes]
        pieces = [p.reshape(-1, *shape) for p, shape in zip(z_flat.split(sizes, dim=1), self._z_shapes)]
        h = self.final.inverse(pieces[-1])
        for scale, factored in zip(reversed(self.scales), reversed(pieces[:-1])):
            h = scale.inverse(torch.cat([factored, h], dim=1))
        if self.preprocess is not None:
            h = self.preprocess.inverse(h)
        return h

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p(y)`` in nats per example (Dinh et al. 2017, eq. 3); per unit-width bin on images."""
        z, logdet = self.forward_and_logdet(x)
        return standard_normal_log_prob(z) + logdet

    def log_prob_bound(self, x: Tensor, k: int) -> Tensor:
        """A flow's likelihood is exact: equal to :meth:`log_prob` for every ``k``."""
        return self.log_prob(x)

    def loss(self, x: Tensor) -> Tensor:
        """Negative log-likelihood, mean over the batch."""
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Draw ``z ~ N(0, T²I)`` and invert; image samples become levels ``floor(clamp(y, 0, K-1))``."""
        param = next(self.parameters())
        z = temperature * torch.randn(n, self.num_dims, device=param.device, dtype=param.dtype)
        y = self.inverse(z)
        y = to_levels(y, self.levels)
        return y
