"""VAE with an inverse autoregressive flow posterior (Kingma et al. 2016, §4, eqs. 10–11, Algorithm 1).

The encoder gives ``(μ, log σ, h)``; ``z_0 = μ + σ⊙ε``, ``ε ~ N(0, I)``; then ``T`` IAF steps, each a
MADE (Germain et al. 2015) on ``z_{t-1}`` with the context ``h`` entering unmasked, giving ``(m_t, s_t)``
and the numerically stable LSTM-type update (eqs. 13–14)

    σ_t = sigmoid(s_t),    z_t = σ_t ⊙ z_{t-1} + (1 - σ_t) ⊙ m_t.

``∂z_t/∂z_{t-1}`` is triangular with diagonal ``σ_t``, so (eq. 11)

    log q(z_T|x) = log N(ε; 0, I) - Σ_i log σ_{0,i} - Σ_t Σ_i log σ_{t,i},

every Gaussian constant kept. The variable order is reversed between consecutive steps (the MADE
ordering alternates; ``z`` itself keeps its coordinates), so every coordinate can depend on every
other after two steps. The prior and decoder are the VAE's; there is no analytic KL, so ``log_prob``
is the one-sample Monte Carlo ELBO ``log p(x|z_T) + log p(z_T) - log q(z_T|x)``, which includes
the IAF log-det, and ``log_prob_bound(x, k)`` is IWAE-k with the flow applied to each of the ``k``
draws.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaeflow.models.distributions import standard_normal_log_prob
from vaeflow.models.made import MADE
from vaeflow.models.options import check_count
from vaeflow.models.precision import full_precision, sum_per_example
from vaeflow.models.vae import VAE

#: Added to every MADE's ``s`` output, so that a fresh (zero-initialised) step has the gate
#: ``σ = sigmoid(2) ≈ 0.88`` and updates ``z`` only slightly: Kingma et al. (2016, §4) initialise
#: ``s`` "sufficiently positive, such as close to +1 or +2".
GATE_BIAS = 2.0

#: Hidden layers of each IAF step's MADE.
MADE_LAYERS = 2


class VAEIAF(VAE):
    """VAE whose posterior is an inverse autoregressive flow; ``exact = False``.

    Options: those of :class:`~vaeflow.models.vae.VAE` (``latent_dim`` [16], ``hidden`` [256],
    ``layers`` [2], ``beta`` [1.0], ``iwae_k`` [1]), plus ``iaf_steps`` [2] IAF steps (0 gives
    the plain VAE's Gaussian posterior), ``iaf_hidden`` [64] units in each of the
    :data:`MADE_LAYERS` hidden layers of every step's MADE, and ``context_dim`` [16], the size of
    the encoder's context ``h`` (0: steps without context). ``beta`` weighs the Monte Carlo KL
    ``log q(z_T|x) - log p(z_T)`` in :meth:`loss`.
    """

    label = "VAE-IAF"
    prose_name = "the VAE-IAF hybrid"
    year = 2016  # Kingma et al., Improved variational inference with inverse autoregressive flow

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        *,
        latent_dim: int = 16,
        hidden: int = 256,
        layers: int = 2,
        beta: float = 1.0,
        iwae_k: int = 1,
        iaf_steps: int = 2,
        iaf_hidden: int = 64,
        context_dim: int = 16,
    ) -> None:
        super().__init__(
            data_shape, levels, latent_dim=latent_dim, hidden=hidden, layers=layers, beta=beta, iwae_k=iwae_k
        )
        checks = (("iaf_steps", iaf_steps, 0), ("iaf_hidden", iaf_hidden, 1), ("context_dim", context_dim, 0))
        for name, value, least in checks:
            check_count("VAEIAF", name, value, minimum=least)
        if iaf_steps > 0 and self.latent_dim < 2:
            raise ValueError(
                f"VAEIAF needs latent_dim >= 2 for its autoregressive steps, got latent_dim={latent_dim!r}; "
                "raise latent_dim or set iaf_steps=0"
            )
        self.iaf_steps, self.iaf_hidden, self.context_dim = int(iaf_steps), int(iaf_hidden), int(context_dim)
        # the encoder's last layer now also emits the context h: outputs [μ | log σ | h]
        last = self.encoder[-1]
        assert isinstance(last, nn.Linear)
        self.encoder[-1] = nn.Linear(last.in_features, 2 * self.latent_dim + self.context_dim)
        order = torch.arange(self.latent_dim)
        self.iaf = nn.ModuleList(
            MADE(
                self.latent_dim,
                self.iaf_hidden,
                layers=MADE_LAYERS,
                outputs_per_dim=2,
                context_features=self.context_dim,
                order=order if step % 2 == 0 else order.flip(0),
            )
            for step in range(self.iaf_steps)
        )

    def posterior_parameters(self, x: Tensor) -> tuple[Tensor, ...]:
        """``(μ, log σ, h)``: ``z_0``'s Gaussian, each ``(B, latent_dim)``, and the context ``(B, context_dim)``."""
        out = self._encoder_output(x)
        mean, log_std, context = out.split([self.latent_dim, self.latent_dim, self.context_dim], dim=-1)
        return mean, log_std, context

    def posterior_sample(self, posterior: tuple[Tensor, ...], eps: Tensor) -> tuple[Tensor, Tensor]:
        """``z_T`` and ``log q(z_T|x)`` (eq. 11) from noise ``eps (..., B, latent_dim)``, flow applied to every draw."""
        mean, log_std, context = posterior
        z, log_q = super().posterior_sample((mean, log_std), eps)
        if not self.iaf:
            return z, log_q
        shape = z.shape
        z = z.reshape(-1, self.latent_dim)
        context = context.expand(*shape[:-1], self.context_dim).reshape(-1, self.context_dim)
        log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for made in self.iaf:
            m, s = full_precision(made(z, context)).unbind(dim=1)  # float32 under autocast
            s = s + GATE_BIAS
            z = torch.sigmoid(s) * z + torch.sigmoid(-s) * m  # 1 - sigmoid(s) = sigmoid(-s), accurate near 1
            log_det = log_det + sum_per_example(F.logsigmoid(s))
        return z.reshape(shape), log_q - log_det.reshape(shape[:-1])

    def _elbo_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One-sample ``log p(x|z_T)`` and Monte Carlo KL ``log q(z_T|x) - log p(z_T)`` (reparameterised)."""
        posterior = self.posterior_parameters(x)
        z, log_q = self.posterior_sample(posterior, torch.randn_like(posterior[0]))
        return self.log_likelihood(x.flatten(1), z), log_q - standard_normal_log_prob(z)

    def log_prob(self, x: Tensor) -> Tensor:
        """One-sample Monte Carlo ELBO ``log p(x|z_T) + log p(z_T) - log q(z_T|x)``, per example, in nats."""
        return super().log_prob(x)

    @property
    def latent_source(self) -> str:
        """``z_T`` at ``ε = 0``: the IAF applied to ``z_0 = μ(x)`` (Kingma et al. 2016, eq. 10), since the
        decoder and the prior act on ``z_T``; not the posterior's exact mean."""
        return "z_T at eps=0 (IAF applied to the posterior mean of z_0)"

    def _widest_layer(self) -> int:
        return max(super()._widest_layer(), self.iaf_hidden)
