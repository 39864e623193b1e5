"""Inverse Autoregressive Flow as a density model (Kingma et al. 2016), with density distillation.

IAF is MAF (:mod:`vaeflow.models.maf`) run the other way round: each block is a MADE on the *noise*
side, so the sampling direction is one MADE pass per block (Kingma et al. 2016, eq. 10, in the
mean/log-scale form)::

    x_i = z_i · exp(α_i(z_<i)) + μ_i(z_<i),      log|det ∂x/∂z| = Σ_i α_i,

while the density of a given ``x`` needs ``z`` back, ``z_i = (x_i − μ_i(z_<i))·exp(−α_i(z_<i))``,
``D`` sequential MADE passes per block. With ``z ~ N(0, I)`` through ``blocks`` such steps (the
order reversed between blocks), then the inverse logit preprocessing on images (samples in
dequantised level units, see :mod:`vaeflow.models.base`)::

    log q(y) = log N(z; 0, I) − Σ_blocks Σ_i α_i + log|det ∂h/∂y|        (h: logits of y)

:meth:`IAF.sample_with_log_prob` gets this for its own samples in one pass per block — what IAF is
good at. :meth:`IAF.log_prob` of given data (maximum-likelihood training) is exact but sequential.
:meth:`IAF.distillation_loss` trains an IAF from a teacher density by probability density
distillation (van den Oord et al. 2018, Parallel WaveNet, eq. 4).

Batch normalisation (a MAF option) is not offered: IAF's cheap direction is sampling, where no
batch of data is at hand to normalise with, and a batch-dependent density would make the
distillation objective depend on the other samples.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaeflow.models.base import DensityModel
from vaeflow.models.maf import AutoregressiveFlow, MaskedAffineAutoregressive


class InverseAutoregressiveAffine(MaskedAffineAutoregressive):
    """One IAF step (Kingma et al. 2016, eq. 10), forward in the *sampling* direction.

    ``forward``  z ↦ x: ``x_i = z_i·exp(α_i(z_<i)) + μ_i(z_<i)``, ``log|det ∂x/∂z| = Σ α_i`` (one pass);
    ``inverse``  x ↦ z: ``z_i = (x_i − μ_i(z_<i))·exp(−α_i(z_<i))`` (``D`` sequential passes, shared
    with :class:`MaskedAffineAutoregressive`).
    """

    @staticmethod
    def affine(v: Tensor, mu: Tensor, alpha: Tensor) -> Tensor:
        return v * torch.exp(alpha) + mu

    @staticmethod
    def solve(w: Tensor, mu: Tensor, alpha: Tensor) -> Tensor:
        return (w - mu) * torch.exp(-alpha)

    @staticmethod
    def log_scale(alpha: Tensor) -> Tensor:
        return alpha


class IAF(AutoregressiveFlow):
    """Inverse Autoregressive Flow density model; ``exact = True``, ``discrete = False``.

    Sampling (:meth:`sample`, :meth:`sample_with_log_prob`): one MADE pass per block.
    Density of given inputs (:meth:`log_prob`, :meth:`loss`): ``D`` sequential passes per block.

    Options (keyword, defaults in brackets), as :class:`vaeflow.models.maf.MAF` without
    ``batch_norm``: ``blocks`` [5], ``hidden`` [128], ``layers`` [2], ``logit_alpha`` [0.05],
    ``order`` ["reverse"], ``max_log_scale`` [3.0].
    """

    label = "IAF"
    year = 2016  # Kingma et al., Improved variational inference with inverse autoregressive flow

    slow_density = True  # D sequential MADE passes per block

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
        # applied in this order from the noise z to the (logit-space) data
        self.steps = nn.ModuleList(
            InverseAutoregressiveAffine(self.num_dims, hidden, layers, block_order, max_log_scale)
            for block_order in self.orders
        )

    def inverse_and_logdet(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Sampling direction, one MADE pass per block: ``(y, log|det ∂y/∂z|)`` including the preprocessing."""
        h, logdet = z, z.new_zeros(z.shape[0])
        for step in self.steps:
            h, step_logdet = step(h)
            logdet = logdet + step_logdet
        y, pre_logdet = self._from_flat(h)
        return y, logdet + pre_logdet

    def inverse(self, z: Tensor) -> Tensor:
        """``z (B, D)`` to inputs in one MADE pass per block."""
        return self.inverse_and_logdet(z)[0]

    def forward_and_logdet(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs to ``z (B, D)`` and ``log|det ∂z/∂y|`` by sequential inversion, ``D`` passes per block."""
        h, logdet = self._to_flat(y)
        for step in reversed(self.steps):
            h, step_logdet = step.inverse_and_logdet(h)
            logdet = logdet + step_logdet
        return h, logdet

    def sample_with_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` reparameterised samples ``y`` in the model's input space and their ``log q(y)``.

        One pass per block: ``log q(y) = log N(z) − log|det ∂y/∂z|``. ``y`` is continuous (dequantised
        level units on images, not rounded) and differentiable with respect to the parameters.
        """
        z = self.base_sample(n)
        y, logdet = self.inverse_and_logdet(z)
        return y, self.base_log_prob(z) - logdet

    def distillation_loss(self, teacher: DensityModel, n: int) -> Tensor:
        """Probability density distillation (van den Oord et al. 2018, eq. 4): ``KL(q_student ‖ p_teacher)``.

        Monte Carlo estimate ``mean_j [log q(y_j) − log p_teacher(y_j)]`` over ``n`` reparameterised
        student samples ``y_j ~ q``; gradients reach the student through ``y`` and ``log q``. This is
        the *reverse* KL: it is mode-seeking (the student is punished for mass where the teacher has
        none, not for missing teacher modes), unlike maximum likelihood (the forward KL). It is ≥ 0
        in expectation and 0 iff ``q = p``. The teacher must be a density on the same input space
        (``discrete = False``, same ``data_shape`` and ``levels``); a non-exact teacher (a VAE's
        ELBO) makes the estimate an upper bound on the KL. The teacher's parameters are not
        detached here: the caller freezes them and puts the teacher in eval mode
        (``teacher.eval().requires_grad_(False)``), so batch statistics are never used.
        """
        if teacher.discrete:
            raise ValueError(
                f"distillation needs a teacher density on dequantised inputs; {type(teacher).__name__} "
                "is discrete (a probability mass on integer levels), use a flow as the teacher"
            )
        if tuple(teacher.data_shape) != self.data_shape or teacher.levels != self.levels:
            raise ValueError(
                f"teacher {type(teacher).__name__} models data_shape {tuple(teacher.data_shape)}, levels "
                f"{teacher.levels} but the student IAF models {self.data_shape}, levels {self.levels}; "
                "distil between models of the same dataset"
            )
        y, log_q = self.sample_with_log_prob(n)
        return (log_q - teacher.log_prob(y)).mean()
