"""Flow++ (Ho et al. 2019): logistic-mixture CDF couplings and variational dequantisation.

Image data (``levels = K``, ``data_shape = (C, H, W)``). The model takes the integer levels
``x`` themselves (``discrete = True``) and bounds the discrete log-likelihood with a learned
dequantiser ``q(u|x)`` (Flow++ §3.1, eq. 12):

    log P(x) = log ∫_{[0,1)^D} p(x + u) du  ≥  E_{q(u|x)}[log p(x + u) - log q(u|x)],

so ``exact = False``. ``log_prob`` is this bound with one draw ``u ~ q(u|x)``;
``log_prob_bound(x, k)`` is its importance-weighted estimate
``logsumexp_i[log p(x + u_i) - log q(u_i|x)] - log k`` (Burda et al. 2016), also a lower bound,
non-decreasing in ``k`` in expectation. Both are bounds, never the exact likelihood.

* ``q(u|x)`` — :class:`VariationalDequantizer`: ``ε ~ N(0, I)`` → ``dequant_steps``
  checkerboard mixture-CDF couplings conditioned on features of ``x`` (a conv layer and
  ``max(1, res_blocks)`` residual blocks on the rescaled levels) → ``u = σ(·) ∈ (0, 1)^D``;
  ``log q`` includes every coupling's and the sigmoid's log-det.
* ``p(y)`` — the main flow on ``y = x + u`` in level units: :class:`LogitPreprocess` first (its
  log-det carries ``-D·log K``, so ``p`` is a density per unit-width bin and no ``D·log K`` is
  subtracted anywhere else), then per scale ``steps`` checkerboard couplings, a squeeze,
  ``steps`` channel couplings and half of the channels factored out to the base (Real NVP's
  multi-scale layout, Dinh et al. 2017 §3.6); the last scale has ``steps`` checkerboard
  couplings. Standard normal base.

Vector data (``levels = None``, ``data_shape = (D,)``): the main flow alone, ``coupling_layers``
alternating-half mixture-CDF couplings with MLP conditioners; an exact density
(``exact = True``, ``discrete = False``) and ``log_prob_bound = log_prob``.

Left out of the paper's model to keep it small: self-attention in the conditioners,
actnorm, invertible 1x1 convolutions and dropout.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaeflow.models.coupling import ResidualBlock
from vaeflow.models.distributions import standard_normal_log_prob
from vaeflow.models.flow import MultiScaleFlow
from vaeflow.models.mixture_coupling import (
    channel_mixture_coupling,
    checkerboard_mixture_coupling,
    vector_mixture_coupling,
)
from vaeflow.models.multiscale import FLOWPP_SCALES
from vaeflow.models.options import check_count, check_rank
from vaeflow.models.precision import sum_per_example
from vaeflow.models.transforms import Compose, LogitPreprocess

#: Number of (draw, example, element) entries pushed through the flows at once in
#: :meth:`FlowPP.log_weights`, bounding the memory of large-``k`` bounds.
_CHUNK_ENTRIES = 2**21


class VariationalDequantizer(nn.Module):
    """``q(u|x)`` on ``(0, 1)^D`` for integer levels ``x`` (Flow++ §3.1).

    ``u = σ(g(ε; x))``, ``ε ~ N(0, I)``, ``g`` a stack of checkerboard mixture-CDF couplings whose
    conditioners also see ``h(x)``, features of ``x/(K-1) - ½`` from a conv layer and a residual
    block. ``log q(u|x) = log N(ε) - log|det ∂g/∂ε| - Σ log σ'(g)``.
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        levels: int,
        *,
        steps: int,
        hidden: int,
        res_blocks: int,
        components: int,
    ) -> None:
        super().__init__()
        channels, height, width = data_shape
        self.levels = levels
        self.features = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            *[ResidualBlock(hidden) for _ in range(max(1, res_blocks))],
            nn.ReLU(),
        )
        self.couplings = nn.ModuleList(
            checkerboard_mixture_coupling(
                channels, height, width, i % 2, hidden, res_blocks, components, context_channels=hidden
            )
            for i in range(steps)
        )

    def _context(self, x: Tensor) -> Tensor:
        return self.features(x / (self.levels - 1) - 0.5)

    def transform(self, eps: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Deterministic part: noise ``ε`` to ``(u, log q(u|x))``, differentiable in both and the parameters."""
        context = self._context(x)
        h = eps
        log_q = standard_normal_log_prob(eps)
        for coupling in self.couplings:
            h, step = coupling(h, context)
            log_q = log_q - step
        # log σ'(h) = log σ(h) + log σ(-h), exact in log space
        log_q = log_q - sum_per_example(nn.functional.logsigmoid(h) + nn.functional.logsigmoid(-h))
        # σ(h) rounds to exactly 0 or 1 for |h| beyond ~17 (float32): keep u inside the open unit
        # interval by one machine epsilon; log q is that of the unrounded σ(h).
        tiny = torch.finfo(h.dtype).eps
        u = torch.sigmoid(h).clamp(tiny, 1.0 - tiny)
        return u, log_q

    def sample_and_log_q(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``u ~ q(u|x)`` (reparameterised) and return ``(u, log q(u|x))``."""
        eps = torch.randn(
            x.shape, generator=generator, dtype=x.dtype, device=x.device if generator is None else generator.device
        )
        return self.transform(eps.to(x.device), x)

    def log_q(self, u: Tensor, x: Tensor) -> Tensor:
        """``log q(u|x)`` of given ``u ∈ (0, 1)^D`` (inverts the couplings by bisection)."""
        context = self._context(x)
        h = torch.log(u) - torch.log1p(-u)
        log_q = -sum_per_example(torch.log(u) + torch.log1p(-u))  # log σ'(h) = log u(1-u)
        for coupling in reversed(self.couplings):
            h = coupling.inverse(h, context)
        eps, logdet = h, h.new_zeros(h.shape[0])
        for coupling in self.couplings:  # log-det at the recovered ε, same code path as sampling
            h, step = coupling(h, context)
            logdet = logdet + step
        return log_q + standard_normal_log_prob(eps) - logdet


class FlowPP(MultiScaleFlow):
    """Flow++ density model (see the module docstring for the bound and the layout).

    Options (keyword, defaults in brackets). Images: ``hidden_channels`` [32] of every conv net,
    ``res_blocks`` [1] residual blocks per conv net, ``components`` [4] logistics per mixture,
    ``steps`` [4] couplings per mask kind and scale, ``n_scales`` [2], ``dequant_steps`` [2]
    couplings of ``q(u|x)``, ``logit_alpha`` [0.05]. Vectors: ``coupling_layers`` [6],
    ``hidden`` [64] units × ``mlp_layers`` [2] per MLP, and ``components``.
    Options of the other data kind are ignored.

    Images: ``exact = False``, ``discrete = True`` (takes integer levels). Vectors:
    ``exact = True``, ``discrete = False``. The main flow ``p(y)`` is the multi-scale layout of
    :class:`~vaeflow.models.flow.MultiScaleFlow` (:meth:`flow_log_prob`, :meth:`inverse`);
    sampling is :class:`~vaeflow.models.flow.Flow`'s.
    """

    label = "Flow++"
    year = 2019  # Ho et al., Flow++: improving flow-based generative models with variational dequantization
    bound_needs_levels = True  # its bound dequantises grey levels: on real vectors it is exact

    width_option_images = "hidden_channels"  # the coupling networks' convolutions

    exact = False  # the instance overrides both: True / False on real vectors
    discrete = True
    bound_name = "variational-dequantisation bound"
    importance_weighted_name = "iw"
    slow_sampling = True  # the inverse of every mixture-CDF coupling is a bisection
    can_complete = False  # q(u|x) needs integer levels: the bound is not differentiable in the image

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        *,
        hidden_channels: int = 32,
        res_blocks: int = 1,
        components: int = 4,
        steps: int = 4,
        n_scales: int = FLOWPP_SCALES.default,
        dequant_steps: int = 2,
        logit_alpha: float = 0.05,
        coupling_layers: int = 6,
        hidden: int = 64,
        mlp_layers: int = 2,
    ) -> None:
        super().__init__(data_shape, levels)
        components = check_count("FlowPP", "components", components)
        self.dequantizer: VariationalDequantizer | None = None
        check_rank("FlowPP", self.data_shape)
        if len(self.data_shape) == 3:
            if self.levels is None or self.levels < 2:
                raise ValueError(
                    f"FlowPP on images (data_shape {self.data_shape}) needs levels K >= 2 (integer grey levels), "
                    f"got {levels!r}"
                )
            self.exact, self.discrete = False, True
            self._build_image_flow(hidden_channels, res_blocks, components, steps, n_scales, dequant_steps, logit_alpha)
        else:
            if self.levels is not None:
                raise ValueError(
                    f"FlowPP on vectors (data_shape {self.data_shape}) takes real data (levels None), "
                    f"got levels={levels!r}; "
                    "give image data as (C, H, W)"
                )
            coupling_layers = check_count("FlowPP", "coupling_layers", coupling_layers)
            hidden = check_count("FlowPP", "hidden", hidden)
            mlp_layers = check_count("FlowPP", "mlp_layers", mlp_layers)
            self.exact, self.discrete = True, False
            dim = self.data_shape[0]
            self.build_single_scale(
                Compose(
                    *[
                        vector_mixture_coupling(dim, i % 2, hidden, mlp_layers, components)
                        for i in range(coupling_layers)
                    ]
                )
            )

    def _build_image_flow(
        self,
        hidden_channels: int,
        res_blocks: int,
        components: int,
        steps: int,
        n_scales: int,
        dequant_steps: int,
        logit_alpha: float,
    ) -> None:
        """``q(u|x)`` and the main flow: per scale ``steps`` checkerboard couplings, a squeeze and
        ``steps`` channel couplings; the last scale ``steps`` checkerboard couplings."""
        hidden_channels = check_count("FlowPP", "hidden_channels", hidden_channels)
        steps = check_count("FlowPP", "steps", steps)
        n_scales = check_count("FlowPP", "n_scales", n_scales)
        dequant_steps = check_count("FlowPP", "dequant_steps", dequant_steps)
        res_blocks = check_count("FlowPP", "res_blocks", res_blocks, minimum=0)
        channels, height, width = self.data_shape
        if height * width < 2:
            raise ValueError(
                f"FlowPP: images need at least 2 pixels for checkerboard couplings, got data_shape {self.data_shape}"
            )
        FLOWPP_SCALES.check(n_scales, self.data_shape)  # the rule the study configuration is checked with
        assert self.levels is not None
        self.preprocess = LogitPreprocess(self.levels, logit_alpha)
        self.dequantizer = VariationalDequantizer(
            (channels, height, width),
            self.levels,
            steps=dequant_steps,
            hidden=hidden_channels,
            res_blocks=res_blocks,
            components=components,
        )
        common = dict(hidden=hidden_channels, res_blocks=res_blocks, components=components)
        self.build_scales(
            n_scales,
            per_scale=steps,
            last=steps,
            checkerboard=lambda c, h, w, parity: checkerboard_mixture_coupling(c, h, w, parity, **common),
            channelwise=lambda c, h, w, parity: channel_mixture_coupling(c, h, w, parity, **common),
        )

    # --- the dequantiser q(u|x) ---------------------------------------------------------------

    def _require_dequantizer(self) -> VariationalDequantizer:
        if self.dequantizer is None:
            raise ValueError(
                "FlowPP on real vectors has no dequantiser: it is only built for image data (levels given)"
            )
        return self.dequantizer

    def _check_levels(self, x: Tensor) -> None:
        self.check_input(x)
        assert self.levels is not None
        if ((x != torch.floor(x)) | (x < 0) | (x > self.levels - 1)).any():
            raise ValueError(
                f"FlowPP on images takes integer levels in [0, {self.levels - 1}] (discrete = True) and dequantises "
                "them itself; got non-integer or out-of-range values — pass the raw levels, not x + u"
            )

    def sample_and_log_q(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``u ~ q(u|x)`` in ``(0, 1)^D`` and ``log q(u|x)`` for integer levels ``x``."""
        return self._require_dequantizer().sample_and_log_q(x, generator)

    def log_q(self, u: Tensor, x: Tensor) -> Tensor:
        """``log q(u|x)`` of a given ``u ∈ (0, 1)^D``."""
        return self._require_dequantizer().log_q(u, x)

    def log_weights(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``log p(x + u_i) - log q(u_i|x)`` for ``k`` draws ``u_i ~ q(u|x)``, shape ``(k, B)`` (images only).

        Draws are processed in chunks of at most ``_CHUNK_ENTRIES`` entries so any ``k`` fits in memory.
        """
        if int(k) != k or k < 1:
            raise ValueError(f"FlowPP: the number of importance samples k must be a positive integer, got {k!r}")
        dequantizer = self._require_dequantizer()
        self._check_levels(x)
        batch = x.shape[0]
        chunk = max(1, _CHUNK_ENTRIES // max(1, batch * self.num_dims))
        out = []
        for start in range(0, k, chunk):
            draws = min(chunk, k - start)
            xs = x.repeat(draws, *([1] * (x.dim() - 1)))
            u, log_q = dequantizer.sample_and_log_q(xs, generator)
            out.append((self.flow_log_prob(xs + u) - log_q).reshape(draws, batch))
        return torch.cat(out, dim=0)

    # --- the interface ------------------------------------------------------------------------

    def log_prob(self, x: Tensor) -> Tensor:
        """Images: the one-draw variational-dequantisation bound ``log p(x + u) - log q(u|x)`` (eq. 12),
        a lower bound on ``log P(x)``. Vectors: the exact log-density."""
        if self.dequantizer is None:
            return self.flow_log_prob(x)
        return self.log_weights(x, 1)[0]

    def latent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images: the main flow's ``z = f(x + u)``, ``u ~ q(u|x)`` (one draw from ``generator``), the
        map whose density the model reports. Vectors: ``z = f(x)``."""
        if self.dequantizer is None:
            return super().latent(x, generator)
        u, _ = self.sample_and_log_q(x, generator)
        return self.forward_and_logdet(x + u)[0]

    @property
    def latent_source(self) -> str:
        if self.dequantizer is None:
            return super().latent_source
        return "z = f(x+u), u ~ q(u∣x), its learned dequantiser (one seeded draw)"

    def log_prob_bound(self, x: Tensor, k: int) -> Tensor:
        """Images: the importance-weighted bound ``logsumexp_i log w_i - log k``. Vectors: :meth:`log_prob`."""
        if self.dequantizer is None:
            return self.flow_log_prob(x)
        return torch.logsumexp(self.log_weights(x, k), dim=0) - math.log(k)
