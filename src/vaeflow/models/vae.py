"""Variational autoencoder (Kingma & Welling 2014) with an importance-weighted bound (Burda et al. 2016).

Encoder ``q(z|x) = N(μ(x), diag σ(x)²)``, an MLP on the flattened input (image levels rescaled
to ``[-1, 1]``); prior ``p(z) = N(0, I)``; decoder an MLP giving

* image data (``levels = K``): a discretised logistic per pixel, mean and log-scale in level
  units (Salimans et al. 2017), so ``log p(x|z)`` is a log-*mass* of the integer levels and no
  ``D·log K`` term appears anywhere (``discrete = True``);
* real vectors (``levels = None``): ``N(μ(z), diag σ²)`` with one learned log-std per
  coordinate. A per-``z`` variance would make the likelihood unbounded (Mattei & Frellsen 2018).

``log_prob`` is the ELBO with the analytic KL and one reparameterised sample (eq. 7 of Kingma &
Welling 2014); ``log_prob_bound(x, k)`` is IWAE-k (Burda et al. 2016, eq. 8). The training
objective :meth:`VAE.loss` is the negative ELBO, the β-weighted ELBO (Higgins et al. 2017) or the
negative IWAE-k (importance-weighted training, Burda et al. 2016); the options change training only.

Subclasses with a richer posterior (e.g. :class:`vaeflow.models.vae_iaf.VAEIAF`) override
:meth:`VAE.posterior_parameters` and :meth:`VAE.posterior_sample` (and the ELBO's KL term); the
decoder, the importance weights, the bounds and sampling are shared.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaeflow.models.base import DensityModel
from vaeflow.models.distributions import (
    diagonal_normal_log_prob,
    discretized_logistic_log_prob,
    discretized_logistic_sample,
    standard_normal_log_prob,
)
from vaeflow.models.options import check_count, check_levels
from vaeflow.models.precision import full_precision

#: Lower clamp of the decoder's log-scale in level units. At s = e^-3 ≈ 0.05 a logistic centred
#: on a level puts 1 - 2σ(-10) ≈ 0.99991 of its mass in that level's bin: effectively a point
#: mass, so nothing is lost, while the gradients of 1/s stay bounded.
LOG_SCALE_MIN = -3.0

#: Number of (sample, example, feature) entries decoded at once in :meth:`VAE.log_weights`.
_CHUNK_ENTRIES = 2**22


def _mlp(in_features: int, out_features: int, hidden: int, layers: int) -> nn.Sequential:
    blocks: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, out_features))


def logistic_parameters(out: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """The decoder's output ``(..., 2D)`` as the discretised logistic's mean and log-scale, each ``(..., D)``.

    The first half is the mean in level units, mapped linearly (``-1 → 0``, ``1 → K-1``); the
    second is the log-scale, offset so that a fresh decoder starts with a scale of about
    ``K/8`` levels and clamped below at :data:`LOG_SCALE_MIN`.
    """
    raw_mean, raw_log_scale = out.chunk(2, dim=-1)
    mean = 0.5 * (levels - 1) * (1.0 + raw_mean)
    log_scale = torch.clamp(raw_log_scale + math.log(levels / 8.0), min=LOG_SCALE_MIN)
    return mean, log_scale


class VAE(DensityModel):
    """Gaussian-latent VAE; ``exact = False``.

    Options (keyword, defaults in brackets): ``latent_dim`` [16], ``hidden`` [256] units in each
    of ``layers`` [2] hidden layers of encoder and decoder, ``beta`` [1.0], the weight of the KL
    in :meth:`loss` (β-VAE, Higgins et al. 2017; β = 1 is the ELBO), ``iwae_k`` [1]: when > 1,
    :meth:`loss` is the negative IWAE-k instead of the ELBO (Burda et al. 2016, importance-weighted
    training with reparameterised gradients). ``log_prob`` (ELBO) and ``log_prob_bound`` (IWAE-k)
    never use ``beta`` or ``iwae_k``: they change training only. ``beta ≠ 1`` together with
    ``iwae_k > 1`` is refused: a β-weighted IWAE bounds nothing standard and would be
    indistinguishable in the tables from a real IWAE run.
    ``discrete`` is True when ``levels`` is given (discretised-logistic decoder), else False.
    """

    label = "VAE"
    prose_name = "the VAE"
    year = 2014  # Kingma & Welling, Auto-encoding variational Bayes

    exact = False
    discrete = True  # the instance overrides this: False for real-valued data (levels None)
    bound_name = "ELBO"
    importance_weighted_name = "iwae"
    latent_kind = "vae"
    temperature_sampling = False  # T would scale the prior's std only, not the decoder's pixel noise

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
    ) -> None:
        super().__init__(data_shape, levels)
        for name, value in (("latent_dim", latent_dim), ("hidden", hidden), ("layers", layers), ("iwae_k", iwae_k)):
            check_count(type(self).__name__, name, value)
        if isinstance(beta, bool) or not beta >= 0:
            raise ValueError(f"{type(self).__name__} option 'beta' must be a number >= 0, got {beta!r}")
        if iwae_k > 1 and beta != 1:
            raise ValueError(
                f"VAE options beta={beta!r} and iwae_k={iwae_k!r} cannot be combined: the β-weighted IWAE is not "
                "a standard objective. Use beta (β-VAE, ELBO training) or iwae_k (IWAE training), not both."
            )
        check_levels(type(self).__name__, self.levels)
        self.discrete = self.levels is not None
        self.latent_dim = int(latent_dim)
        self.beta = float(beta)
        self.iwae_k = int(iwae_k)
        self.encoder = _mlp(self.num_dims, 2 * self.latent_dim, hidden, layers)
        self.decoder = _mlp(self.latent_dim, 2 * self.num_dims if self.discrete else self.num_dims, hidden, layers)
        if not self.discrete:
            self.decoder_log_std = nn.Parameter(torch.zeros(self.num_dims))

    # --- the two networks -------------------------------------------------------------------

    def _encoder_output(self, x: Tensor) -> Tensor:
        """The encoder MLP on the flattened input (image levels rescaled to ``[-1, 1]``), ``(B, out)``."""
        self.check_input(x)
        h = x.flatten(1)
        if self.discrete:
            h = 2.0 * h / (self.levels - 1) - 1.0
        return full_precision(self.encoder(h))  # float32 under autocast: z, its noise, log q and the KL use it

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, log σ)`` of the Gaussian ``q(z|x)`` (of ``q(z_0|x)`` in subclasses), each ``(B, latent_dim)``."""
        out = self._encoder_output(x)
        return out[:, : self.latent_dim], out[:, self.latent_dim : 2 * self.latent_dim]

    def posterior_parameters(self, x: Tensor) -> tuple[Tensor, ...]:
        """Everything :meth:`posterior_sample` needs from ``x``; here ``(μ, log σ)``, each ``(B, latent_dim)``."""
        return self.encode(x)

    def posterior_sample(self, posterior: tuple[Tensor, ...], eps: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterised ``z ~ q(z|x)`` and ``log q(z|x)`` from standard-normal noise ``eps (..., B, latent_dim)``.

        Here ``z = μ + σ⊙ε`` and ``log q = log N(z; μ, diag σ²)``, every constant kept; ``z`` has
        the shape of ``eps`` and ``log q`` that shape without its last dimension.
        """
        mean, log_std = posterior
        z = mean + torch.exp(log_std) * eps
        return z, diagonal_normal_log_prob(z, mean, log_std, batch_dims=z.dim() - 1)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Parameters of ``p(x|z)`` over flattened data, each ``(..., D)``.

        Images: logistic mean and log-scale in level units (log-scale clamped below at
        :data:`LOG_SCALE_MIN`). Vectors: Gaussian mean and log-std.
        """
        out = full_precision(self.decoder(z))  # float32 under autocast: log p(x|z) uses it
        if not self.discrete:
            return out, self.decoder_log_std.expand_as(out)
        return logistic_parameters(out, self.levels)

    def log_likelihood(self, x_flat: Tensor, z: Tensor) -> Tensor:
        """``log p(x|z)`` summed over the data dimensions; ``x_flat (..., D)`` broadcasts against ``z (..., L)``."""
        mean, log_scale = self.decode(z)
        if self.discrete:
            return discretized_logistic_log_prob(x_flat, mean, log_scale, self.levels).sum(-1)
        return diagonal_normal_log_prob(x_flat, mean, log_scale, batch_dims=mean.dim() - 1)

    # --- bounds -------------------------------------------------------------------------------

    def _elbo_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """One-sample ``E_q log p(x|z)`` (reparameterised) and the analytic ``KL(q(z|x) ‖ N(0, I))``."""
        mean, log_std = self.encode(x)
        z = mean + torch.exp(log_std) * torch.randn_like(mean)
        reconstruction = self.log_likelihood(x.flatten(1), z)
        kl = 0.5 * (mean.square() + torch.exp(2.0 * log_std) - 1.0 - 2.0 * log_std).sum(-1)
        return reconstruction, kl

    def log_prob(self, x: Tensor) -> Tensor:
        """The ELBO ``E_q[log p(x|z)] - KL(q‖p)``, per example, in nats (Kingma & Welling 2014, eq. 7).

        The KL is analytic; the expectation uses one reparameterised draw ``z = μ + σ⊙ε``, so the
        result is a stochastic but unbiased estimate of the ELBO.
        """
        reconstruction, kl = self._elbo_terms(x)
        return reconstruction - kl

    def log_weights(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """Importance log-weights ``log p(x|z_i) + log p(z_i) - log q(z_i|x)``, ``z_i ~ q(z|x)``, shape ``(k, B)``.

        Every Gaussian constant is kept. The noise ``ε (k, B, latent_dim)`` is drawn at once (so
        the result does not depend on the chunking); the ``k`` draws are then decoded in chunks
        so that large ``k`` (e.g. 1000 on a batch of 100 images) fits in memory.
        """
        if int(k) != k or k < 1:
            raise ValueError(f"VAE.log_weights: k must be a positive integer, got {k!r}")
        posterior = self.posterior_parameters(x)
        mean = posterior[0]
        x_flat = x.flatten(1)
        batch = x.shape[0]
        noise = torch.randn((k, batch, self.latent_dim), generator=generator, device=mean.device, dtype=mean.dtype)
        chunk = max(1, _CHUNK_ENTRIES // (batch * self._widest_layer()))
        weights = []
        for eps in noise.split(chunk, dim=0):
            z, log_q = self.posterior_sample(posterior, eps)
            log_prior = standard_normal_log_prob(z, batch_dims=2)
            weights.append(self.log_likelihood(x_flat, z) + log_prior - log_q)
        return torch.cat(weights, dim=0)

    def _widest_layer(self) -> int:
        """Most features per (draw, example) of any layer applied to the ``k`` draws (sets the chunk size)."""
        return max(2 * self.num_dims, self.decoder[0].out_features)

    def log_prob_bound(self, x: Tensor, k: int) -> Tensor:
        """IWAE-k: ``logsumexp_i log w_i - log k`` (Burda et al. 2016, eq. 8); ELBO ≤ IWAE-k ≤ log p(x)."""
        return torch.logsumexp(self.log_weights(x, k), dim=0) - math.log(k)

    def loss(self, x: Tensor) -> Tensor:
        """``-mean(E_q log p(x|z) - β·KL)``, with β = 1 the negative ELBO; with ``iwae_k`` > 1 ``-mean IWAE-k``.

        IWAE training (Burda et al. 2016, eq. 14) back-propagates through the ``k`` reparameterised
        draws of :meth:`log_weights`, i.e. the gradient of ``log mean_i w_i``.
        """
        if self.iwae_k > 1:
            return -self.log_prob_bound(x, self.iwae_k).mean()
        reconstruction, kl = self._elbo_terms(x)
        return -(reconstruction - self.beta * kl).mean()

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """``z ~ N(0, T²I)``, then ``x ~ p(x|z)``: integer levels (as floats) for images, reals otherwise."""
        param = next(self.parameters())
        z = temperature * torch.randn(n, self.latent_dim, device=param.device, dtype=param.dtype)
        mean, log_scale = self.decode(z)
        if self.discrete:
            x = discretized_logistic_sample(mean, log_scale, self.levels)
        else:
            x = mean + torch.exp(log_scale) * torch.randn_like(mean)
        return x.reshape(n, *self.data_shape)

    # --- the latent (the latents probe) -------------------------------------------------------

    def latent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The posterior's code at zero noise, ``(B, latent_dim)``: ``μ(x)`` for the Gaussian posterior
        (subclasses: their posterior's sample at ``ε = 0``)."""
        posterior = self.posterior_parameters(x)
        z, _ = self.posterior_sample(posterior, torch.zeros_like(posterior[0]))
        return z

    @property
    def latent_source(self) -> str:
        return "posterior mean mu(x)"

    def from_latent(self, z: Tensor) -> Tensor:
        """The decoder's mean; on images rounded to the nearest level and clamped to ``[0, K-1]``."""
        mean = self.decode(z)[0]
        x = mean if self.levels is None else torch.round(mean.clamp(0, self.levels - 1))
        return x.reshape(len(z), *self.data_shape)
