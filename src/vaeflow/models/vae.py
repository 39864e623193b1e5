"""Variational autoencoder (Kingma & Welling 2014) with an importance-weighted bound (Burda et al. 2016).

Encoder ``q(z|x) = N(μ(x), diag σ(x)²)``, an MLP on the flattened input (image levels rescaled
to ``[-1, 1]``); prior ``p(z) = N(0, I)``; decoder an MLP giving

* image data (``levels = K``): a discretised logistic per pixel, mean and log-scale in level
  units (Salimans et al. 2017), so ``log p(x|z)`` is a log-*mass* of the integer levels and no
  ``D·log K`` term appears anywhere (``discrete = True``);
* real vectors (``levels = None``): ``N(μ(z), diag σ²)`` with one learned log-std per
  coordinate. A per-``z`` variance would make the likelihood unbounded (Mattei & Frellsen 2018).

``log_prob`` is the ELBO with the analytic KL and one reparameterised sample (eq. 7 of Kingma &
Welling 2014); ``log_prob_bound(x, k)`` is IWAE-k (Burda et al. 2016, eq. 8).
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


class VAE(DensityModel):
    """Gaussian-latent VAE; ``exact = False``.

    Options (keyword, defaults in brackets): ``latent_dim`` [16], ``hidden`` [256] units in each
    of ``layers`` [2] hidden layers of encoder and decoder, ``beta`` [1.0], the weight of the KL
    in :meth:`loss` (β-VAE, Higgins et al. 2017; β = 1 is the ELBO). ``log_prob`` and
    ``log_prob_bound`` never use β.
    ``discrete`` is True when ``levels`` is given (discretised-logistic decoder), else False.
    """

    exact = False
    discrete = True  # the instance overrides this: False for real-valued data (levels None)

    def __init__(
        self,
        data_shape: tuple[int, ...],
        levels: int | None,
        *,
        latent_dim: int = 16,
        hidden: int = 256,
        layers: int = 2,
        beta: float = 1.0,
    ) -> None:
        super().__init__(data_shape, levels)
        for name, value in (("latent_dim", latent_dim), ("hidden", hidden), ("layers", layers)):
            if int(value) != value or value < 1:
                raise ValueError(f"VAE option {name!r} must be a positive integer, got {value!r}")
        if not beta >= 0:
            raise ValueError(f"VAE option 'beta' must be >= 0, got {beta!r}")
        if self.levels is not None and self.levels < 2:
            raise ValueError(f"VAE: levels must be >= 2 for image data (or None for real data), got {levels!r}")
        self.discrete = self.levels is not None
        self.latent_dim = int(latent_dim)
        self.beta = float(beta)
        self.encoder = _mlp(self.num_dims, 2 * self.latent_dim, hidden, layers)
        self.decoder = _mlp(self.latent_dim, 2 * self.num_dims if self.discrete else self.num_dims, hidden, layers)
        if not self.discrete:
            self.decoder_log_std = nn.Parameter(torch.zeros(self.num_dims))

    # --- the two networks -------------------------------------------------------------------

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, log σ)`` of ``q(z|x)``, each ``(B, latent_dim)``."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"VAE expects inputs of shape (batch, *{self.data_shape}), got {tuple(x.shape)}")
        h = x.flatten(1)
        if self.discrete:
            h = 2.0 * h / (self.levels - 1) - 1.0
        mean, log_std = self.encoder(h).chunk(2, dim=-1)
        return mean, log_std

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Parameters of ``p(x|z)`` over flattened data, each ``(..., D)``.

        Images: logistic mean and log-scale in level units (log-scale clamped below at
        :data:`LOG_SCALE_MIN`). Vectors: Gaussian mean and log-std.
        """
        out = self.decoder(z)
        if not self.discrete:
            return out, self.decoder_log_std.expand_as(out)
        raw_mean, raw_log_scale = out.chunk(2, dim=-1)
        half_range = 0.5 * (self.levels - 1)
        mean = half_range * (1.0 + raw_mean)
        # offset so that a fresh decoder starts with a scale of about K/8 levels
        log_scale = torch.clamp(raw_log_scale + math.log(self.levels / 8.0), min=LOG_SCALE_MIN)
        return mean, log_scale

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
        mean, log_std = self.encode(x)
        x_flat = x.flatten(1)
        batch = x.shape[0]
        noise = torch.randn((k, batch, self.latent_dim), generator=generator, device=mean.device, dtype=mean.dtype)
        chunk = max(1, _CHUNK_ENTRIES // (batch * max(2 * self.num_dims, self.decoder[0].out_features)))
        weights = []
        for eps in noise.split(chunk, dim=0):
            z = mean + torch.exp(log_std) * eps
            log_q = diagonal_normal_log_prob(z, mean, log_std, batch_dims=2)
            log_prior = standard_normal_log_prob(z, batch_dims=2)
            weights.append(self.log_likelihood(x_flat, z) + log_prior - log_q)
        return torch.cat(weights, dim=0)

    def log_prob_bound(self, x: Tensor, k: int) -> Tensor:
        """IWAE-k: ``logsumexp_i log w_i - log k`` (Burda et al. 2016, eq. 8); ELBO ≤ IWAE-k ≤ log p(x)."""
        return torch.logsumexp(self.log_weights(x, k), dim=0) - math.log(k)

    def loss(self, x: Tensor) -> Tensor:
        """``-mean(E_q log p(x|z) - β·KL)``; with β = 1 the negative ELBO."""
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
