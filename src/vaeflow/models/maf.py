"""Masked Autoregressive Flow (Papamakarios et al. 2017) and the MADE affine step it shares with IAF.

One MAF block is a MADE (Germain et al. 2015) with Gaussian conditionals, read as a bijection from
data ``x`` to noise ``u`` (Papamakarios et al. 2017, eqs. 3–4):

    u_i = (x_i − μ_i(x_<i)) · exp(−α_i(x_<i)),      log|det ∂u/∂x| = −Σ_i α_i.

The density direction is **one** MADE pass; sampling, ``x_i = u_i·exp(α_i) + μ_i``, needs ``D``
sequential passes, because ``μ_i, α_i`` depend on the ``x_<i`` being produced. IAF
(:mod:`vaeflow.models.iaf`) is the same step with the roles of the directions exchanged.

Images (``data_shape = (C, H, W)``) take dequantised levels ``y ∈ [0, K)^D`` in level units
(see :mod:`vaeflow.models.base`): :class:`LogitPreprocess` first (its log-det holds ``−D·log K``),
then the flattened ``D``-vector goes through ``blocks`` MADE blocks. The autoregressive order of
the MADE is reversed between blocks (or a fixed-seed random permutation per block), which changes
only the masks, so no permutation layers and no log-det terms are needed. Optional batch
normalisation between blocks (as in the paper's experiments) is a bijection with running statistics in eval mode.
``log p(y) = Σ log N(u; 0, I) + log|det ∂u/∂y|`` with every constant kept.

The log-scale is bounded by a soft clamp, ``α = b·tanh(raw/b)`` with ``b = max_log_scale``
(the identity near 0, never beyond ``±b``), so one block can never rescale by more than ``e^b``;
the MADE's output layer is zero-initialised, so a fresh block is the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaeflow.models.flow import Flow
from vaeflow.models.made import MADE
from vaeflow.models.options import check_choice, check_count, check_levels, check_positive, check_rank
from vaeflow.models.precision import full_precision, sum_per_example
from vaeflow.models.transforms import Bijection, Compose, LogitPreprocess

#: Accepted values of the ``order`` option.
ORDERS = ("reverse", "random")

#: Seed of the random orders (``order = "random"``): fixed, so a model is rebuilt identically.
ORDER_SEED = 0


def soft_clamp(x: Tensor, bound: float) -> Tensor:
    """``bound·tanh(x/bound)``: the identity near 0, smoothly bounded to ``(−bound, bound)``."""
    return bound * torch.tanh(x / bound)


def autoregressive_orders(features: int, blocks: int, order: str) -> list[Tensor]:
    """One MADE order per block (``order[d]`` = position of input ``d``).

    ``"reverse"``: the identity, then reversed, alternating (Papamakarios et al. 2017);
    ``"random"``: a random permutation per block drawn from a generator seeded :data:`ORDER_SEED`.
    """
    if order == "reverse":
        identity = torch.arange(features)
        return [identity if k % 2 == 0 else identity.flip(0) for k in range(blocks)]
    if order == "random":
        generator = torch.Generator().manual_seed(ORDER_SEED)
        return [torch.randperm(features, generator=generator) for _ in range(blocks)]
    raise ValueError(f"order must be one of {', '.join(map(repr, ORDERS))}, got {order!r}")


class MaskedAffineAutoregressive(Bijection):
    """A MADE-conditioned affine autoregressive bijection whose conditioner reads its *forward input*.

    ``forward`` is one MADE pass; ``inverse`` solves the triangular system with ``D`` sequential
    passes. This class is the MAF parameterisation (Papamakarios et al. 2017, eqs. 3–4)::

        forward  v ↦ w:  w_i = (v_i − μ_i(v_<i))·exp(−α_i(v_<i)),   log|det ∂w/∂v| = −Σ α_i
        inverse  w ↦ v:  v_i = w_i·exp(α_i(v_<i)) + μ_i(v_<i)       (D passes)

    Subclasses change only :meth:`affine`, :meth:`solve` and :meth:`log_scale` (IAF, Kingma et al.
    2016, uses ``w = v·exp(α) + μ``); the MADE, the bound on ``α`` and the sequential solver are shared.
    """

    def __init__(
        self, features: int, hidden: int, layers: int = 2, order: Tensor | None = None, max_log_scale: float = 3.0
    ) -> None:
        super().__init__()
        self.features = int(features)
        self.max_log_scale = float(max_log_scale)
        self.made = MADE(features, hidden, layers, outputs_per_dim=2, order=order, zero_init=True)

    def conditioner(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, α)``, each ``(B, D)``; ``α`` soft-clamped to ``(−max_log_scale, max_log_scale)``."""
        out = full_precision(self.made(v))  # float32 under autocast: the affine map and its log-det use it
        return out[:, 0], soft_clamp(out[:, 1], self.max_log_scale)

    @staticmethod
    def affine(v: Tensor, mu: Tensor, alpha: Tensor) -> Tensor:
        """The element-wise map of the one-pass direction (MAF: ``(v − μ)·exp(−α)``)."""
        return (v - mu) * torch.exp(-alpha)

    @staticmethod
    def solve(w: Tensor, mu: Tensor, alpha: Tensor) -> Tensor:
        """The inverse of :meth:`affine` for given ``μ, α`` (MAF: ``w·exp(α) + μ``)."""
        return w * torch.exp(alpha) + mu

    @staticmethod
    def log_scale(alpha: Tensor) -> Tensor:
        """Element-wise ``log|∂w_i/∂v_i|`` of :meth:`affine` (MAF: ``−α``)."""
        return -alpha

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """One MADE pass: ``(w, log|det ∂w/∂v|)``."""
        mu, alpha = self.conditioner(v)
        return self.affine(v, mu, alpha), sum_per_example(self.log_scale(alpha))

    def inverse_and_logdet(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """``(v, log|det ∂v/∂w|)`` by at most ``D`` sequential MADE passes, differentiable throughout.

        Every pass updates all coordinates from the current ``v``. A coordinate is exact (as a
        function of ``w`` and the parameters) one pass after every input its ``μ, α`` read is exact,
        so after :func:`vaeflow.models.made.inversion_passes` passes (``D`` for a MADE at least
        ``D − 1`` wide, fewer for a narrower one) ``v`` is the exact inverse and autograd through the
        unrolled passes gives its exact gradient. The last pass read a ``v`` whose every input to
        ``α`` was already exact, so its ``α`` gives the exact log-det.
        """
        v = torch.zeros_like(w)
        alpha = w.new_zeros(w.shape)
        for _ in range(self.made.inversion_passes):
            mu, alpha = self.conditioner(v)
            v = self.solve(w, mu, alpha)
        return v, -sum_per_example(self.log_scale(alpha))

    def inverse(self, w: Tensor) -> Tensor:
        """``v`` with ``forward(v)[0] == w`` (``D`` sequential MADE passes)."""
        return self.inverse_and_logdet(w)[0]


class BatchNormBijection(Bijection):
    """Batch normalisation as a bijection (Dinh et al. 2017, §3.7; used between MADEs by Papamakarios et al. 2017).

    ``u = (x − m)/√(v + ε) · exp(log γ) + β``, ``log|det ∂u/∂x| = Σ(log γ − ½ log(v + ε))``.
    In training mode ``m, v`` are the batch mean and (biased) variance, treated as constants in
    the log-det as in the paper, and the running averages are updated with ``momentum``; in eval
    mode (every density reported) and in :meth:`inverse` (sampling) the running averages are used,
    so the map is a fixed bijection and the density of one example does not depend on the others.
    """

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training:
            if x.shape[0] < 2:
                raise ValueError(
                    "BatchNormBijection in training mode needs a batch of at least 2 examples; "
                    "call model.eval() to use the running statistics"
                )
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(var.detach().to(self.running_var.dtype), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        u = (x - mean) * torch.rsqrt(var + self.eps) * torch.exp(self.log_gamma) + self.beta
        logdet = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()
        return u, logdet.expand(x.shape[0])

    def inverse(self, u: Tensor) -> Tensor:
        return (u - self.beta) * torch.exp(-self.log_gamma) * torch.sqrt(
            self.running_var + self.eps
        ) + self.running_mean


class AutoregressiveFlow(Flow):
    """What MAF and IAF share: option checks, logit preprocessing and flattening.

    Subclasses implement :meth:`forward_and_logdet` (inputs → flattened ``z``) and :meth:`inverse`;
    the base density, ``log_prob``, the loss and sampling are :class:`~vaeflow.models.flow.Flow`'s.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        *,
        blocks: int,
        hidden: int,
        layers: int,
        logit_alpha: float,
        order: str,
        max_log_scale: float,
    ) -> None:
        super().__init__(data_shape, levels)
        name = type(self).__name__
        check_rank(name, self.data_shape)
        if self.num_dims < 2:
            raise ValueError(
                f"{name}: an autoregressive flow needs at least 2 dimensions, got data_shape {self.data_shape}"
            )
        check_levels(name, self.levels)
        for option, value in (("blocks", blocks), ("hidden", hidden), ("layers", layers)):
            check_count(name, option, value)
        check_choice(name, "order", order, ORDERS)
        check_positive(name, "max_log_scale", max_log_scale)
        # levels given: inputs are dequantised levels, mapped to logit space with the -D·log K term
        self.preprocess: LogitPreprocess | None = (
            None if self.levels is None else LogitPreprocess(self.levels, logit_alpha)
        )
        self.orders = autoregressive_orders(self.num_dims, blocks, order)

    def _to_flat(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Preprocess (images) and flatten: ``(h (B, D), log|det ∂h/∂y|)``."""
        h, logdet = self.preprocessed(y)
        return h.reshape(y.shape[0], -1), logdet

    def _from_flat(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Invert :meth:`_to_flat`: ``(y, log|det ∂y/∂h|)``.

        The preprocessing log-det is evaluated from the logits ``h`` (``log s = log σ(h)``,
        ``log(1 − s) = log σ(−h)``), which stays finite where ``σ(h)`` rounds to 0 or 1.
        """
        h = h.reshape(h.shape[0], *self.data_shape)
        if self.preprocess is None:
            return h, h.new_zeros(h.shape[0])
        pre = self.preprocess
        constant = self.num_dims * (math.log1p(-2.0 * pre.alpha) - math.log(pre.levels))
        logdet_h_of_y = constant - sum_per_example(F.logsigmoid(h) + F.logsigmoid(-h))
        return pre.inverse(h), -logdet_h_of_y


class MAF(AutoregressiveFlow):
    """Masked Autoregressive Flow (Papamakarios et al. 2017); ``exact = True``, ``discrete = False``.

    Density: one MADE pass per block. Sampling: ``D`` sequential MADE passes per block.

    Options (keyword, defaults in brackets): ``blocks`` [5] MADE blocks, each with ``layers`` [2]
    hidden layers of ``hidden`` [128] units (images and vectors alike); ``logit_alpha`` [0.05] of
    the logit preprocessing (images); ``order`` ["reverse"]: MADE order reversed between blocks, or
    ``"random"`` (fixed-seed permutation per block); ``batch_norm`` [False]: batch normalisation
    between blocks (off by default so that a training-mode density never depends on the other
    examples of the batch); ``max_log_scale`` [3.0]: soft bound on each block's ``|α_i|``.
    """

    label = "MAF"
    year = 2017  # Papamakarios, Pavlakou & Murray, Masked autoregressive flow for density estimation

    slow_sampling = True  # D sequential MADE passes per block

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        *,
        blocks: int = 5,
        hidden: int = 128,
        layers: int = 2,
        logit_alpha: float = 0.05,
        order: str = "reverse",
        batch_norm: bool = False,
        max_log_scale: float = 3.0,
    ) -> None:
        super().__init__(
            data_shape,
            levels,
            blocks=blocks,
            hidden=hidden,
            layers=layers,
            logit_alpha=logit_alpha,
            order=order,
            max_log_scale=max_log_scale,
        )
        steps: list[Bijection] = []
        for k, block_order in enumerate(self.orders):
            if batch_norm and k > 0:
                steps.append(BatchNormBijection(self.num_dims))
            steps.append(MaskedAffineAutoregressive(self.num_dims, hidden, layers, block_order, max_log_scale))
        self.flow = Compose(*steps)

    def forward_and_logdet(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs to ``u (B, D)`` and ``log|det ∂u/∂y|``: one MADE pass per block."""
        h, logdet = self._to_flat(y)
        u, step = self.flow(h)
        return u, logdet + step

    def inverse(self, z: Tensor) -> Tensor:
        """``u (B, D)`` to inputs: ``D`` sequential MADE passes per block."""
        return self._from_flat(self.flow.inverse(z))[0]
