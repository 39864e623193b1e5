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

from vaeflow.models.coupling import channel_coupling, checkerboard_coupling, vector_coupling
from vaeflow.models.flow import MultiScaleFlow
from vaeflow.models.multiscale import REALNVP_SCALES
from vaeflow.models.options import check_count, check_levels, check_rank
from vaeflow.models.transforms import Compose, LogitPreprocess


class RealNVP(MultiScaleFlow):
    """Real NVP density model; ``exact = True`` (the log-likelihood is exact), ``discrete = False``.

    Options (all keyword, defaults in brackets). Images: ``hidden_channels`` [32] and
    ``res_blocks`` [2] of each coupling's conv net, ``n_scales`` [2], ``logit_alpha`` [0.05].
    Vectors: ``coupling_layers`` [8], ``hidden`` [64] units × ``mlp_layers`` [2] per MLP.
    Options of the other data kind are ignored.

    The transform is the multi-scale layout of :class:`~vaeflow.models.flow.MultiScaleFlow`;
    the density, bound, loss and sampling are :class:`~vaeflow.models.flow.Flow`'s.
    """

    label = "Real NVP"
    year = 2017  # Dinh, Sohl-Dickstein & Bengio, Density estimation using Real NVP

    width_option_images = "hidden_channels"  # the coupling networks' convolutions

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
        check_levels("RealNVP", self.levels)
        check_rank("RealNVP", self.data_shape)
        # levels given: inputs are dequantised levels, mapped to logit space with the -D·log K term
        if self.levels is not None:
            self.preprocess = LogitPreprocess(self.levels, logit_alpha)
        if len(self.data_shape) == 3:
            self._build_image_flow(hidden_channels, res_blocks, n_scales)
        else:
            coupling_layers = check_count("RealNVP", "coupling_layers", coupling_layers)
            hidden = check_count("RealNVP", "hidden", hidden)
            mlp_layers = check_count("RealNVP", "mlp_layers", mlp_layers)
            dim = self.data_shape[0]
            self.build_single_scale(
                Compose(*[vector_coupling(dim, i % 2, hidden, mlp_layers) for i in range(coupling_layers)])
            )

    def _build_image_flow(self, hidden_channels: int, res_blocks: int, n_scales: int) -> None:
        """Per scale (§3.6) three checkerboard couplings, a squeeze, three channel-wise couplings;
        the last scale four checkerboard couplings."""
        hidden_channels = check_count("RealNVP", "hidden_channels", hidden_channels)
        n_scales = check_count("RealNVP", "n_scales", n_scales)
        res_blocks = check_count("RealNVP", "res_blocks", res_blocks, minimum=0)
        if min(self.data_shape[1:]) < 2:
            raise ValueError(
                f"RealNVP: images must be at least 2x2 for checkerboard couplings, got data_shape {self.data_shape}"
            )
        REALNVP_SCALES.check(n_scales, self.data_shape)  # the rule the study configuration is checked with
        self.build_scales(
            n_scales,
            per_scale=3,
            last=4,
            checkerboard=lambda c, h, w, parity: checkerboard_coupling(c, h, w, parity, hidden_channels, res_blocks),
            channelwise=lambda c, h, w, parity: channel_coupling(c, h, w, parity, hidden_channels, res_blocks),
        )
