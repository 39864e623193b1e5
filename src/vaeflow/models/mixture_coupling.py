"""Logistic-mixture CDF coupling of Flow++ (Ho et al. 2019, §3.2, eq. 7).

With a binary mask ``b`` (1 = conditioning half ``x_a``, 0 = transformed half ``x_b``) each
transformed element becomes

    y_b = σ⁻¹(F(x_b; π, μ, s)) · exp(a) + b,    F(x) = Σ_k π_k σ((x - μ_k)/s_k),

where ``π, μ, log s`` (``components`` of each) and ``a, b`` come from a network of ``b⊙x``
(plus an optional context, for the conditional flow of variational dequantisation, §3.1).
``F`` is a strictly increasing bijection ℝ → (0, 1), so the map is invertible, with

    log|∂y_b/∂x_b| = log F'(x) - log F(x) - log(1 - F(x)) + a,   F'(x) = Σ_k π_k σ(t_k)σ(-t_k)/s_k.

Numerics. Everything is computed in log space: ``log F = logsumexp_k(log π_k + log σ(t_k))`` and
``log(1-F) = logsumexp_k(log π_k + log σ(-t_k))`` are each accurate in their own tail, so
``σ⁻¹(F) = log F - log(1-F)`` and the log-derivative stay finite and accurate for any finite
input without clamping ``F`` away from 0 and 1 (a clamp at ``ε`` would cap ``|σ⁻¹(F)|`` at
``log(1/ε)`` and make the map non-invertible in the tails). The only clamp is on the log-scales,
``LOG_SCALE_MIN = -7 ≤ log s ≤ LOG_SCALE_MAX = 7``: the lower bound is the authors' (it bounds
``1/s`` and thereby the gradients), the upper one is ours (it keeps ``μ + s·l`` finite in float32
when an untrained or badly conditioned flow is inverted on large inputs). ``a = scale·tanh(raw)``
is bounded as in :mod:`vaeflow.models.coupling`.

Conditioning. ``σ⁻¹∘F`` is strictly increasing but can be flat to machine precision between
far-apart narrow components (``F ≈ π_1`` there); no root finder can invert such a map to
``1e-4``. Its log-det is then very negative, so training steers away from it.

Inverse: undo the affine part, ``l = (y - b)·exp(-a)``, then solve ``σ⁻¹(F(x)) = l`` by
vectorised bisection. Every component's CDF is at most ``σ(l)`` at ``min_k(μ_k + s_k·l)`` and at
least ``σ(l)`` at ``max_k(μ_k + s_k·l)``, so that interval is a guaranteed bracket (and tight:
its width is the spread of the component quantiles). Bisection runs
``⌈log2(max width / tol)⌉`` iterations (one host sync to count them, capped at
``BISECTION_MAX_ITERS``) with ``tol = BISECTION_TOL_EPS · eps(dtype) · (1 + min_{x in bracket} |x|)``,
i.e. to a few ulps of the root, however wide the bracket: about 24 iterations in float32 (measured
on a model trained on the 8x8 digits) and 50–60 in float64; each costs one mixture-CDF evaluation
of every element, so sampling costs about as much as 24 forward passes of the couplings' mixtures.

Initialisation. The conditioner's last layer has zero weights, so a fresh coupling is the same
fixed map everywhere: ``a = b = 0``, equal weights ``π``, ``s = 1`` and means spread as
``μ_k = MU_INIT_SPREAD · linspace(-1, 1, K)``. This is close to the identity (slope between 0.88
and 1, ``|y - x| ≤ 0.27`` for four components) but *not* equal to it on purpose: the identity needs
every component at ``μ = 0, s = 1``, and identical components are a symmetric stationary point
that gradient descent never leaves — the mixture would stay a single logistic for good (measured
on the 8x8 digits: 2.15 bits/dim after 400 steps from identical components, 1.90 from spread
ones). Zeroing :attr:`MixtureCDFCoupling.output_layer` gives the exact identity (the tests' known
answers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaeflow.models.coupling import MLP, ConvNet, channel_mask, checkerboard_mask, half_mask
from vaeflow.models.precision import full_precision, sum_per_example
from vaeflow.models.transforms import Bijection

#: Lower bound on each component's log-scale (``s ≥ e^-7 ≈ 9e-4``), as in the Flow++ code.
LOG_SCALE_MIN = -7.0
#: Upper bound on each component's log-scale (``s ≤ e^7 ≈ 1100``): keeps inverse brackets finite.
LOG_SCALE_MAX = 7.0
#: Bisection stops when the bracket is below this many machine epsilons times ``1 + min |x|`` over it.
BISECTION_TOL_EPS = 4.0
#: Initial component means ``μ_k = MU_INIT_SPREAD · linspace(-1, 1, K)`` (breaks the components' symmetry).
MU_INIT_SPREAD = 1.0
#: Hard cap on bisection iterations (reached only for absurdly wide brackets, e.g. from overflow).
BISECTION_MAX_ITERS = 200


def params_per_element(components: int) -> int:
    """Network outputs per transformed element: ``a``, ``b`` and ``(π, μ, log s)`` per component."""
    return 2 + 3 * components


def _log_cdfs(x: Tensor, log_pi: Tensor, mu: Tensor, log_s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(log F, log(1-F), log F')`` of the mixture at ``x``; components on dim 1, ``x`` unsqueezed there."""
    t = (x.unsqueeze(1) - mu) * torch.exp(-log_s)
    log_sig_pos = F.logsigmoid(t)
    log_sig_neg = F.logsigmoid(-t)
    log_cdf = torch.logsumexp(log_pi + log_sig_pos, dim=1)
    log_sf = torch.logsumexp(log_pi + log_sig_neg, dim=1)
    log_pdf = torch.logsumexp(log_pi + log_sig_pos + log_sig_neg - log_s, dim=1)
    return log_cdf, log_sf, log_pdf


def mixture_logit_cdf(x: Tensor, log_pi: Tensor, mu: Tensor, log_s: Tensor) -> tuple[Tensor, Tensor]:
    """``σ⁻¹(F(x))`` and ``log d σ⁻¹(F(x))/dx`` elementwise (mixture parameters on dim 1)."""
    log_cdf, log_sf, log_pdf = _log_cdfs(x, log_pi, mu, log_s)
    return log_cdf - log_sf, log_pdf - log_cdf - log_sf


def mixture_logit_cdf_inverse(target: Tensor, log_pi: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
    """Solve ``σ⁻¹(F(x)) = target`` for ``x`` by bisection (see the module docstring for the bracket)."""
    info = torch.finfo(target.dtype)
    quantiles = mu + torch.exp(log_s) * target.unsqueeze(1)
    # an overflowing bracket end (huge |target|) is cut to a finite one; F is still evaluated there
    lo = quantiles.min(dim=1).values.clamp(min=-info.max / 4)
    hi = quantiles.max(dim=1).values.clamp(max=info.max / 4)
    # smallest |x| in the bracket: the tolerance is relative to the root, however wide the bracket
    nearest_zero = torch.where((lo <= 0) & (hi >= 0), torch.zeros_like(lo), torch.minimum(lo.abs(), hi.abs()))
    tol = BISECTION_TOL_EPS * info.eps * (1.0 + nearest_zero)
    ratio = torch.nan_to_num((hi - lo) / tol, nan=0.0)  # NaN inputs stay NaN whatever we do
    ratio = ratio.max().item() if target.numel() else 0.0
    iterations = 0 if ratio <= 1.0 else min(BISECTION_MAX_ITERS, math.ceil(math.log2(ratio)))
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = mixture_logit_cdf(mid, log_pi, mu, log_s)[0] < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


class MixtureCDFCoupling(Bijection):
    """Flow++ coupling (Ho et al. 2019, eq. 7) with a fixed binary ``mask`` of the event shape.

    ``net`` maps the conditioner input — ``b⊙x``, then the mask's first channel when
    ``append_mask``, then the ``context`` when one is given, concatenated on dim 1 — to
    ``(2 + 3·components)·C`` channels (images, ``mask (C, H, W)``) or ``(2 + 3·components)·D``
    features (vectors, ``mask (D,)``), read as ``[a, b, logit π_1..K, μ_1..K, log s_1..K]`` blocks
    of the event shape.
    """

    def __init__(self, mask: Tensor, net: nn.Module, components: int, append_mask: bool = False) -> None:
        super().__init__()
        if mask.dim() not in (1, 3):
            raise ValueError(f"mask must have shape (C, H, W) or (D,), got {tuple(mask.shape)}")
        if int(components) != components or components < 1:
            raise ValueError(f"MixtureCDFCoupling: components must be a positive integer, got {components!r}")
        self.register_buffer("mask", mask)
        self.net = net
        self.components = int(components)
        self.append_mask = append_mask
        scale_shape = (mask.shape[0], 1, 1) if mask.dim() == 3 else (mask.shape[0],)
        self.scale = nn.Parameter(torch.ones(scale_shape))
        k = self.components
        layer = self.output_layer
        expected = params_per_element(k) * mask.shape[0]
        if layer.bias is None or layer.bias.numel() != expected:
            raise ValueError(
                f"MixtureCDFCoupling: the conditioner's last layer must have a bias and "
                f"(2 + 3·{k})·{mask.shape[0]} = {expected} outputs, got {layer}"
            )
        with torch.no_grad():
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
            if k > 1:
                means = MU_INIT_SPREAD * torch.linspace(-1.0, 1.0, k, dtype=layer.bias.dtype)
                layer.bias.view(params_per_element(k), -1)[2 + k : 2 + 2 * k] = means.view(-1, 1)

    @property
    def output_layer(self) -> nn.Conv2d | nn.Linear:
        """The conditioner's last ``Conv2d``/``Linear`` layer (zeroing it makes the coupling the identity)."""
        layers = [m for m in self.net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        if not layers:
            raise ValueError("MixtureCDFCoupling: the conditioner has no Conv2d or Linear output layer")
        return layers[-1]

    def _params(self, x_masked: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        inputs = [x_masked]
        if self.append_mask:
            inputs.append(self.mask[:1].to(x_masked.dtype).expand(x_masked.shape[0], 1, *self.mask.shape[1:]))
        if context is not None:
            inputs.append(context)
        # float32 under autocast: the mixture CDF, its logsumexps and the log-det need it (module docstring)
        out = full_precision(self.net(torch.cat(inputs, dim=1) if len(inputs) > 1 else x_masked))
        k = self.components
        params = out.reshape(x_masked.shape[0], params_per_element(k), *self.mask.shape)
        a = self.scale * torch.tanh(params[:, 0])
        b = params[:, 1]
        log_pi = torch.log_softmax(params[:, 2 : 2 + k], dim=1)
        mu = params[:, 2 + k : 2 + 2 * k]
        log_s = params[:, 2 + 2 * k :].clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
        return a, b, log_pi, mu, log_s

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_masked = x * self.mask
        a, b, log_pi, mu, log_s = self._params(x_masked, context)
        logit_cdf, log_deriv = mixture_logit_cdf(x, log_pi, mu, log_s)
        free = 1.0 - self.mask
        z = x_masked + free * (logit_cdf * torch.exp(a) + b)
        logdet = sum_per_example(free * (log_deriv + a))
        return z, logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        z_masked = z * self.mask
        a, b, log_pi, mu, log_s = self._params(z_masked, context)
        target = (z - b) * torch.exp(-a)
        x = mixture_logit_cdf_inverse(target, log_pi, mu, log_s)
        return z_masked + (1.0 - self.mask) * x


def checkerboard_mixture_coupling(
    channels: int,
    height: int,
    width: int,
    parity: int,
    hidden: int,
    res_blocks: int,
    components: int,
    context_channels: int = 0,
) -> MixtureCDFCoupling:
    """Checkerboard-masked image coupling; the mask (and any context) is appended to the conditioner input."""
    mask = checkerboard_mask(channels, height, width, parity)
    net = ConvNet(channels + 1 + context_channels, params_per_element(components) * channels, hidden, res_blocks)
    return MixtureCDFCoupling(mask, net, components, append_mask=True)


def channel_mixture_coupling(
    channels: int, height: int, width: int, parity: int, hidden: int, res_blocks: int, components: int
) -> MixtureCDFCoupling:
    """Channel-masked image coupling (used after a squeeze)."""
    mask = channel_mask(channels, height, width, parity)
    net = ConvNet(channels, params_per_element(components) * channels, hidden, res_blocks)
    return MixtureCDFCoupling(mask, net, components)


def vector_mixture_coupling(dim: int, parity: int, hidden: int, layers: int, components: int) -> MixtureCDFCoupling:
    """Half-masked vector coupling with an MLP conditioner."""
    return MixtureCDFCoupling(
        half_mask(dim, parity), MLP(dim, params_per_element(components) * dim, hidden, layers), components
    )
