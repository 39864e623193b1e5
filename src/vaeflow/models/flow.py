"""What every exact normalizing flow of the study shares, written once.

A flow is a bijection ``f: y ↦ z`` of the model's input space onto a standard normal base
variable, and its density is the change of variables (Rezende & Mohamed 2015, eq. 1; Dinh et al.
2017, eq. 3)::

    log p(y) = log N(f(y); 0, I) + log|det ∂f(y)/∂y|.

:class:`Flow` holds the base distribution, ``log_prob``, ``log_prob_bound`` (equal to
``log_prob``: the likelihood is exact), ``loss`` (maximum likelihood) and ``sample`` (draw
``z ~ N(0, T²I)``, invert, and on images take the grey level the continuous sample falls in);
a flow implements only its transform, :meth:`Flow.forward_and_logdet` and :meth:`Flow.inverse`
(in the spirit of zuko's ``Flow(transform, base)``).

:class:`MultiScaleFlow` is the multi-scale architecture of Real NVP (Dinh et al. 2017, §3.6,
Fig. 4b) that Real NVP and Flow++ share: an optional pre-processing bijection, then per scale a
bijection that ends by squeezing, after which half of the channels are factored out to the base,
and a last bijection on what is left. The flattened base variable lists the factored-out pieces
in order, the last scale's output last.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

from vaeflow.models.base import DensityModel
from vaeflow.models.distributions import standard_normal_log_prob
from vaeflow.models.transforms import Bijection, Compose, Squeeze, to_levels


class Flow(DensityModel):
    """An exact flow with a standard normal base; ``exact = True``, ``discrete = False``.

    Subclasses implement :meth:`forward_and_logdet` (inputs ``(B, *data_shape)`` to the
    flattened base variable ``z (B, D)`` and ``log|det ∂z/∂y|``) and :meth:`inverse`. On images
    the inputs are dequantised levels in level units and the transform's first layer carries the
    ``-D·log K`` of the rescaling (:mod:`vaeflow.models.base`), so ``log_prob`` is a density per
    unit-width bin with no correction anywhere else.
    """

    exact = True
    discrete = False

    def __init__(self, data_shape: tuple[int, ...], levels: int | None) -> None:
        super().__init__(data_shape, levels)
        #: the bijection applied to the inputs first (on images, the rescaling of the levels that
        #: carries ``-D·log K``); None for none. A subclass sets it in its constructor.
        self.preprocess: Bijection | None = None

    @abstractmethod
    def forward_and_logdet(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs ``(B, *data_shape)`` to the base variable ``z (B, D)`` and ``log|det ∂z/∂y|`` ``(B,)``."""

    @abstractmethod
    def inverse(self, z: Tensor) -> Tensor:
        """The base variable ``z (B, D)`` to inputs ``(B, *data_shape)`` (continuous; level units on images)."""

    def preprocessed(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Check the inputs and apply ``self.preprocess`` (the rescaling of image levels, or None):
        ``(h, log|det ∂h/∂y|)``. Every flow keeps its pre-processing bijection in ``preprocess``."""
        self.check_input(y)
        logdet = y.new_zeros(y.shape[0])
        if self.preprocess is None:
            return y, logdet
        h, step = self.preprocess(y)
        return h, logdet + step

    def unpreprocessed(self, h: Tensor) -> Tensor:
        """Invert ``self.preprocess`` (identity when there is none)."""
        return h if self.preprocess is None else self.preprocess.inverse(h)

    @staticmethod
    def base_log_prob(z: Tensor) -> Tensor:
        """``log N(z; 0, I)`` per example, every constant kept."""
        return standard_normal_log_prob(z)

    def base_sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` draws of ``z ~ N(0, T²I)``, ``(n, D)``, on the parameters' device and dtype."""
        param = next(self.parameters())
        return temperature * torch.randn(n, self.num_dims, device=param.device, dtype=param.dtype)

    def flow_log_prob(self, y: Tensor) -> Tensor:
        """``log N(f(y); 0, I) + log|det ∂f/∂y|`` in nats per example (Dinh et al. 2017, eq. 3)."""
        z, logdet = self.forward_and_logdet(y)
        return self.base_log_prob(z) + logdet

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact ``log p(y)`` in nats per example; per unit-width bin on images."""
        return self.flow_log_prob(x)

    def log_prob_bound(self, x: Tensor, k: int) -> Tensor:
        """A flow's likelihood is exact: equal to :meth:`log_prob` for every ``k``."""
        return self.log_prob(x)

    def loss(self, x: Tensor) -> Tensor:
        """Negative log-likelihood (maximum likelihood), mean over the batch."""
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Draw ``z ~ N(0, T²I)`` and invert; image samples become levels ``floor(clamp(y, 0, K-1))``."""
        return to_levels(self.inverse(self.base_sample(n, temperature)), self.levels)

    def latent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``z = f(y)``, the base variable of the density direction, ``(B, D)``."""
        return self.forward_and_logdet(x)[0]

    @property
    def latent_source(self) -> str:
        return "z = f(x)" if self.levels is None else "z = f(x+u), u ~ U[0,1) (one seeded draw)"

    def from_latent(self, z: Tensor) -> Tensor:
        """``f⁻¹(z)``; on images the bin it falls in, ``floor(clamp(f⁻¹(z), 0, K-1))``."""
        return to_levels(self.inverse(z), self.levels)


#: a coupling of the multi-scale layout: ``(channels, height, width, parity) -> Bijection``
CouplingFactory = Callable[[int, int, int, int], Bijection]


class MultiScaleFlow(Flow):
    """Real NVP's multi-scale layout (Dinh et al. 2017, §3.6), shared by Real NVP and Flow++.

    Attributes a subclass fills: ``preprocess`` (a :class:`Bijection` applied first, or None),
    ``scales`` (one bijection per scale but the last; half of its output's channels are factored
    out after it) and ``final`` (the last scale), by :meth:`build_scales` on images or
    :meth:`build_single_scale` on vectors. The attribute names are those of the checkpoints.
    """

    def __init__(self, data_shape: tuple[int, ...], levels: int | None) -> None:
        super().__init__(data_shape, levels)
        self.scales = nn.ModuleList()
        # event shapes of the pieces of z, in the order they appear in z_flat
        self._z_shapes: list[tuple[int, ...]] = []

    def build_scales(
        self, n_scales: int, per_scale: int, last: int, checkerboard: CouplingFactory, channelwise: CouplingFactory
    ) -> None:
        """Images: ``n_scales - 1`` scales of ``per_scale`` checkerboard couplings, a squeeze and
        ``per_scale`` channel-wise couplings (alternating parity), each followed by factoring out
        half of the channels; then ``last`` checkerboard couplings on what is left."""
        channels, height, width = self.data_shape
        for _ in range(n_scales - 1):
            layers = [checkerboard(channels, height, width, i % 2) for i in range(per_scale)]
            layers.append(Squeeze())
            channels, height, width = 4 * channels, height // 2, width // 2
            layers += [channelwise(channels, height, width, i % 2) for i in range(per_scale)]
            self.scales.append(Compose(*layers))
            channels //= 2
            self._z_shapes.append((channels, height, width))  # the factored-out half
        self.final = Compose(*[checkerboard(channels, height, width, i % 2) for i in range(last)])
        self._z_shapes.append((channels, height, width))

    def build_single_scale(self, final: Bijection) -> None:
        """Vectors: one scale, ``final``, and nothing factored out."""
        self.final = final
        self._z_shapes.append(self.data_shape)

    def forward_and_logdet(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Map inputs to the flattened base variable ``z_flat (B, D)`` and ``log|det ∂z/∂y|`` ``(B,)``."""
        h, logdet = self.preprocessed(y)
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
        return self.unpreprocessed(h)
