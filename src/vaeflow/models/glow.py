"""Glow (Kingma & Dhariwal 2018): actnorm, invertible 1x1 convolutions, affine couplings, multi-scale.

Images (``data_shape = (C, H, W)``) take dequantised levels ``y ∈ [0, K)^D`` in level units
(see :mod:`vaeflow.models.base`). The first layer is Glow's own pre-processing,
:class:`LevelRescale` ``y ↦ y/K - ½`` (no logit), whose log-det is exactly ``-D·log K``, so
``log p(y)`` is the density per unit-width bin with no correction elsewhere. The option
``logit_alpha`` replaces it by Real NVP's :class:`LogitPreprocess` (same ``-D·log K`` term,
plus the logit's) for a like-for-like comparison with Real NVP.

Then ``n_levels`` levels (§3, Fig. 2b): each squeezes (space-to-depth), applies ``steps``
steps of flow — :class:`ActNorm` → :class:`InvertibleConv1x1` → :class:`GlowCoupling` — and,
except for the last, splits off half of the channels ``z_i``. Each split-off half has a
learned conditional prior ``N(z_i; μ_i(h_i), diag σ_i(h_i)²)`` whose mean and log-std come
from a zero-initialised 3x3 convolution of the half ``h_i`` that stays in the flow
(:class:`SplitPrior`, the ``split2d_prior`` of the authors' code); the last level's output
has a standard normal prior. With ``ε_i = (z_i - μ_i)/σ_i`` the map ``y ↦ ε`` is a bijection
and ``log p(y) = Σ log N(ε; 0, I) + log|det ∂ε/∂y|`` — equivalently
``Σ_i log N(z_i; μ_i, σ_i²) + log|det ∂z/∂y|`` in the raw pieces ``z``.

Vectors (``data_shape = (D,)``, toy densities, ``levels = None``) use ``vector_steps`` steps of
actnorm → invertible linear map (the 1x1 convolution on vectors) → affine coupling with an MLP,
and a standard normal prior; no squeeze and no split.

Simplifications relative to the paper (none affects exactness): the coupling network has no
actnorm between its convolutions and its zero-initialised last convolution has no extra learned
output scale; the top prior is a fixed standard normal (no learned top prior, no class
conditioning); the split factors out the first half of the channels (the paper's code keeps the
first half; the two differ by a channel permutation, which the next 1x1 convolution can learn).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaeflow.models.actnorm import ActNorm
from vaeflow.models.coupling import MLP
from vaeflow.models.flow import Flow
from vaeflow.models.invertible_conv import InvertibleConv1x1
from vaeflow.models.multiscale import GLOW_LEVELS
from vaeflow.models.options import check_count, check_levels, check_rank
from vaeflow.models.precision import full_precision, sum_per_example
from vaeflow.models.transforms import Bijection, Compose, LogitPreprocess, Squeeze


class LevelRescale(Bijection):
    """Glow's pre-processing in level units: ``y ↦ y/K - ½``; ``log|det| = -D·log K`` exactly."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        if int(levels) != levels or levels < 1:
            raise ValueError(f"LevelRescale: levels must be a positive integer K, got {levels!r}")
        self.levels = int(levels)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_full((x.shape[0],), -x[0].numel() * math.log(self.levels))
        return x / self.levels - 0.5, logdet

    def inverse(self, z: Tensor) -> Tensor:
        return (z + 0.5) * self.levels


def zero_conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 3x3 convolution with zero weight and bias (Glow's ``Conv2dZeros``: layers start at zero output)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class CouplingConvNet(nn.Module):
    """Glow's coupling network: conv3x3 → ReLU → conv1x1 → ReLU → zero-initialised conv3x3."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            zero_conv3x3(hidden, out_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GlowCoupling(Bijection):
    """Glow's affine coupling (§3.3, Table 1): channels split into ``x_a`` (first ``⌊C/2⌋``) and ``x_b``.

    ``(t, r) = NN(x_a)``, ``s = sigmoid(r + 2)``, ``y_b = (x_b + t) ⊙ s``, ``y_a = x_a``;
    ``log|det| = Σ log s``. With a zero-initialised last layer the coupling starts as the fixed
    contraction ``s = sigmoid(2) ≈ 0.881`` of ``x_b`` (not the identity), as in the paper's code.
    ``net`` maps ``⌊C/2⌋`` channels (features) to ``2·⌈C/2⌉``.
    """

    def __init__(self, num_channels: int, net: nn.Module) -> None:
        super().__init__()
        if num_channels < 2:
            raise ValueError(f"GlowCoupling needs at least 2 channels (features), got {num_channels}")
        self.split = num_channels // 2
        self.net = net

    def _shift_and_log_scale(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = full_precision(self.net(x_a)).chunk(2, dim=1)  # float32 under autocast
        return shift, F.logsigmoid(raw + 2.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        shift, log_s = self._shift_and_log_scale(x_a)
        y_b = (x_b + shift) * log_s.exp()
        return torch.cat([x_a, y_b], dim=1), sum_per_example(log_s)

    def inverse(self, z: Tensor) -> Tensor:
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        shift, log_s = self._shift_and_log_scale(z_a)
        return torch.cat([z_a, z_b * (-log_s).exp() - shift], dim=1)


class SplitPrior(nn.Module):
    """Learned conditional prior of a split-off half: ``(μ, log σ) = ZeroConv3x3(h)`` (Glow §3, ``split2d``).

    Zero-initialised, so it starts as ``N(0, I)``.
    """

    def __init__(self, kept_channels: int, split_channels: int) -> None:
        super().__init__()
        self.conv = zero_conv3x3(kept_channels, 2 * split_channels)

    def forward(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = full_precision(self.conv(kept)).chunk(2, dim=1)  # float32 under autocast
        return mean, log_std


def flow_step(num_channels: int, net: nn.Module) -> Compose:
    """One step of flow (Glow Fig. 2a): actnorm → invertible 1x1 convolution → affine coupling."""
    return Compose(ActNorm(num_channels), InvertibleConv1x1(num_channels), GlowCoupling(num_channels, net))


class Glow(Flow):
    """Glow density model; ``exact = True`` (the log-likelihood is exact), ``discrete = False``.

    Options (all keyword, defaults in brackets). Images: ``hidden_channels`` [32] of each
    coupling network, ``steps`` [4] steps of flow per level, ``n_levels`` [2] levels (each one
    squeezes, so height and width must be divisible by ``2^n_levels``), ``logit_alpha`` [None:
    Glow's ``y/K - ½``; a number in (0, ½): Real NVP's logit pre-processing with that α].
    Vectors: ``vector_steps`` [6] steps, ``hidden`` [64] units × ``mlp_layers`` [2] per coupling MLP.
    Options of the other data kind are ignored.

    The density, bound, loss and sampling are :class:`~vaeflow.models.flow.Flow`'s on the
    standardised base variable of :meth:`forward_and_logdet`; sampling ``ε ~ N(0, T²I)`` scales
    every prior's std (top and split priors) by ``T``, Glow's temperature sampling.
    """

    label = "Glow"
    year = 2018  # Kingma & Dhariwal, Glow: generative flow with invertible 1x1 convolutions

    width_option_images = "hidden_channels"  # the coupling networks' convolutions

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        *,
        hidden_channels: int = 32,
        steps: int = 4,
        n_levels: int = GLOW_LEVELS.default,
        logit_alpha: float | None = None,
        hidden: int = 64,
        mlp_layers: int = 2,
        vector_steps: int = 6,
    ) -> None:
        super().__init__(data_shape, levels)
        check_levels("Glow", self.levels)
        check_rank("Glow", self.data_shape)
        # levels given: inputs are dequantised levels, rescaled with the -D·log K term in the log-det
        if self.levels is not None:
            self.preprocess = (
                LevelRescale(self.levels) if logit_alpha is None else LogitPreprocess(self.levels, logit_alpha)
            )
        self.flow_levels = nn.ModuleList()
        self.split_priors = nn.ModuleList()
        # event shapes of the pieces of z, in the order they appear in z_flat
        self._z_shapes: list[tuple[int, ...]] = []
        if len(self.data_shape) == 3:
            self._build_image_flow(hidden_channels, steps, n_levels)
        else:
            self._build_vector_flow(hidden, mlp_layers, vector_steps)

    def _build_image_flow(self, hidden_channels: int, steps: int, n_levels: int) -> None:
        hidden_channels = check_count("Glow", "hidden_channels", hidden_channels)
        steps = check_count("Glow", "steps", steps)
        n_levels = check_count("Glow", "n_levels", n_levels)
        channels, height, width = self.data_shape
        GLOW_LEVELS.check(n_levels, self.data_shape)  # the rule the study configuration is checked with
        for level in range(n_levels):
            channels, height, width = 4 * channels, height // 2, width // 2
            half = channels // 2
            layers: list[Bijection] = [Squeeze()]
            layers += [
                flow_step(channels, CouplingConvNet(half, 2 * (channels - half), hidden_channels)) for _ in range(steps)
            ]
            self.flow_levels.append(Compose(*layers))
            if level < n_levels - 1:
                self.split_priors.append(SplitPrior(channels - half, half))
                self._z_shapes.append((half, height, width))  # the split-off half
                channels -= half
        self._z_shapes.append((channels, height, width))

    def _build_vector_flow(self, hidden: int, mlp_layers: int, vector_steps: int) -> None:
        hidden = check_count("Glow", "hidden", hidden)
        mlp_layers = check_count("Glow", "mlp_layers", mlp_layers)
        vector_steps = check_count("Glow", "vector_steps", vector_steps)
        dim = self.data_shape[0]
        if dim < 2:
            raise ValueError(
                f"Glow: vector data need at least 2 dimensions for a coupling, got data_shape {self.data_shape}"
            )
        half = dim // 2
        self.flow_levels.append(
            Compose(*[flow_step(dim, MLP(half, 2 * (dim - half), hidden, mlp_layers)) for _ in range(vector_steps)])
        )
        self._z_shapes.append(self.data_shape)

    def encode(self, y: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]:
        """Raw pieces of ``z`` and their priors: ``(pieces, means, log_stds, log|det ∂z/∂y|)``.

        ``pieces[i]`` has shape ``(B, *event shape)``; the split-off pieces come first, the last
        level's output last. ``means[i]``/``log_stds[i]`` parameterise each piece's prior (zeros for
        the last piece's standard normal). The log-det is that of ``y ↦ (pieces)``, without the priors.
        """
        h, logdet = self.preprocessed(y)
        pieces: list[Tensor] = []
        means: list[Tensor] = []
        log_stds: list[Tensor] = []
        for index, level in enumerate(self.flow_levels):
            h, step = level(h)
            logdet = logdet + step
            if index < len(self.split_priors):
                half = h.shape[1] // 2
                piece, h = h[:, :half], h[:, half:]
                mean, log_std = self.split_priors[index](h)
                pieces.append(piece)
                means.append(mean)
                log_stds.append(log_std)
        pieces.append(h)
        means.append(torch.zeros_like(h))
        log_stds.append(torch.zeros_like(h))
        return pieces, means, log_stds, logdet

    def forward_and_logdet(self, y: Tensor, standardize: bool = True) -> tuple[Tensor, Tensor]:
        """Map inputs to the flattened base variable ``(B, D)`` and its ``log|det ∂·/∂y|`` ``(B,)``.

        ``standardize=True`` (default): the standardised pieces ``ε_i = (z_i - μ_i)/σ_i``, whose
        prior is ``N(0, I)``; the log-det includes ``-Σ log σ_i``, so
        ``log p(y) = log N(ε; 0, I) + logdet``. ``standardize=False``: the raw pieces ``z_i`` and the
        log-det of the flow alone (priors in :meth:`encode`).
        """
        pieces, means, log_stds, logdet = self.encode(y)
        if standardize:
            pieces = [(z - m) * torch.exp(-s) for z, m, s in zip(pieces, means, log_stds)]
            logdet = logdet - sum(sum_per_example(s) for s in log_stds)
        return torch.cat([p.reshape(y.shape[0], -1) for p in pieces], dim=1), logdet

    def inverse(self, z_flat: Tensor, standardized: bool = True) -> Tensor:
        """Invert :meth:`forward_and_logdet` (with the same ``standardize`` flag):
        ``(B, D)`` to ``(B, *data_shape)``."""
        sizes = [math.prod(shape) for shape in self._z_shapes]
        pieces = [p.reshape(-1, *shape) for p, shape in zip(z_flat.split(sizes, dim=1), self._z_shapes)]
        h = pieces[-1]
        for index in reversed(range(len(self.flow_levels))):
            if index < len(self.split_priors):
                piece = pieces[index]
                if standardized:
                    mean, log_std = self.split_priors[index](h)
                    piece = mean + torch.exp(log_std) * piece
                h = torch.cat([piece, h], dim=1)
            h = self.flow_levels[index].inverse(h)
        return self.unpreprocessed(h)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent init of every :class:`ActNorm` (Glow §3.1): pass ``x`` forward through the
        flow in order, each actnorm setting its statistics from the activations it receives (so later
        ones see the already-normalised outputs of earlier ones). Actnorms already initialised keep
        their parameters."""
        actnorms = [m for m in self.modules() if isinstance(m, ActNorm)]
        handles = [m.register_forward_pre_hook(lambda module, args: module.initialize(args[0])) for m in actnorms]
        try:
            self.encode(x)
        finally:
            for handle in handles:
                handle.remove()
