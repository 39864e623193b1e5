"""The one interface every model of the study implements.

Input spaces and likelihood accounting (see docs/design.md):

* Image data arrive as integer grey levels ``x ∈ {0, …, K-1}^D`` stored as floats
  (``levels = K``); toy data arrive as real vectors (``levels = None``).
* A *discrete* model (``discrete = True``, e.g. a VAE with a discretised-logistic
  decoder) takes the integer levels themselves and ``log_prob`` is a log-probability
  mass: no dequantisation and no ``D·log K`` term anywhere.
* A *continuous* model (``discrete = False``, every flow) is a density. On image data
  it receives the dequantised ``y = x + u, u ~ U[0,1)^D`` **in level units**; the
  flow's first layer rescales by ``1/K`` and its log-det carries ``-D·log K``, so
  ``log p(y)`` is already the density of a unit-width bin and
  ``log P(x) ≥ E_u[log p(x + u)]`` with no further correction.
  :func:`vaeflow.data.dequantization.model_input` applies the noise.
* bits/dim is always ``-log_prob / (D·ln 2)`` (:func:`vaeflow.evaluation.bits.bits_per_dim`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from vaeflow.models import bound_reported


class DensityModel(nn.Module, ABC):
    """Base class: a generative model with a (bound on the) log-likelihood.

    Subclasses set ``exact`` (flows True, VAEs False) and ``discrete`` (see module
    docstring) and implement the four methods. Both may be set per instance where they
    depend on the data: a VAE is discrete on images and continuous on 2-D vectors.
    """

    exact: bool
    discrete: bool
    #: the model's registry facts (:mod:`vaeflow.models` reads them from the source, so set them as
    #: literals): ``label``, its name on the site, which also marks the module's model class;
    #: ``year``, of its paper (the site lists the VAEs, then the flows, by year); ``prose_name``,
    #: how a sentence names it where that is not the label ("the VAE")
    label: str
    year: int
    prose_name: str = ""
    #: what ``log_prob`` is, and what ``log_prob_bound(x, k)`` is (reported as "<name>-<k>"),
    #: for models whose likelihood is a bound; exact models need neither.
    bound_name: str = "exact"
    importance_weighted_name: str = "exact"
    #: for exact models whose ``log_prob`` is estimated rather than computed (FFJORD's
    #: Hutchinson trace on large inputs): how, in words; empty when it is computed.
    density_estimator: str = ""
    #: whether training may run this model's networks under ``torch.autocast`` (bfloat16; the
    #: log-dets and log-densities stay float32, :mod:`vaeflow.models.precision`). False where the
    #: numerics need float32 throughout; the engine then trains in float32 and says so.
    mixed_precision: bool = True
    #: the constructor option that sets the model's width, on images (C, H, W) and on vectors (D,):
    #: what a study's parameter budget scales (:mod:`vaeflow.models.capacity`)
    width_option_images: str = "hidden"
    width_option_vectors: str = "hidden"

    # --- capabilities: what probes, analyses, benchmarks and the workflow ask instead of names ---

    #: the kind of latent variable: "vae" (an encoder ``q(z|x)``, a decoder ``p(x|z)`` and a prior
    #: over a code of ``latent_dim`` coordinates; ``decode``, ``posterior_parameters`` and
    #: ``posterior_sample`` exist) or "flow" (a bijection onto a base variable of the data's size)
    latent_kind: str = "flow"
    #: whether ``log_prob`` costs far more than one pass of the networks: sequential (IAF: ``D``
    #: MADE passes per block) or an ODE solve with its trace (FFJORD)
    slow_density: bool = False
    #: whether ``sample`` does: sequential (MAF: ``D`` MADE passes per block), an ODE solve
    #: (FFJORD) or a bisection in every coupling (Flow++)
    slow_sampling: bool = False
    #: whether samples at temperature ``T < 1`` are studied: ``T`` scales the std of the base
    #: variable, which for a flow is all the randomness of a sample (Kingma & Dhariwal 2018, §5);
    #: a VAE's sample also draws its decoder's pixel noise, which ``T`` leaves alone
    temperature_sampling: bool = True
    #: whether the model can complete images (inpainting, super-resolution) by gradient ascent on
    #: its (bound on the) log-likelihood in a continuous image: the objective must be
    #: differentiable in the image (not Flow++'s, whose dequantiser needs integer levels)
    can_complete: bool = True

    #: whether the bound (where ``exact`` is False) comes from dequantising grey levels, so that on
    #: real vectors the model is exact (Flow++'s variational dequantisation)
    bound_needs_levels: bool = False

    def reports_bound(self) -> bool:
        """Whether ``log_prob`` is a bound (``bound_name``) with a tighter importance-weighted
        ``log_prob_bound`` and ``log_weights`` (VAEs; Flow++ on images), not the exact likelihood."""
        return bound_reported(self.exact, self.bound_needs_levels, self.levels is not None)

    def latent(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The latent code ``(B, L)`` of inputs ``x`` in the model's input space (what ``log_prob``
        takes: dequantised levels for a continuous model on images), deterministic but for the
        draws from ``generator`` a model may need. Described in words by :attr:`latent_source`."""
        raise NotImplementedError(
            f"{type(self).__name__} does not say how to reach its latent space; "
            "implement latent(), latent_source and from_latent()"
        )

    @property
    def latent_source(self) -> str:
        """In words, which latent :meth:`latent` returns."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its latent; implement latent_source")

    def from_latent(self, z: Tensor) -> Tensor:
        """Examples ``(B, *data_shape)`` from latent codes ``z (B, L)``, deterministically: grey levels
        (as floats) on images, reals on vectors."""
        raise NotImplementedError(f"{type(self).__name__} cannot decode its latents; implement from_latent()")

    @classmethod
    def width_option(cls, data_shape: tuple[int, ...]) -> str:
        """The option that sets this model's width on data of ``data_shape``."""
        return cls.width_option_images if len(data_shape) == 3 else cls.width_option_vectors

    def __init__(self, data_shape: tuple[int, ...], levels: int | None) -> None:
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        self.levels = None if levels is None else int(levels)
        self.num_dims = math.prod(self.data_shape)

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """Per-example log-likelihood in nats on the model's input space, shape ``(B,)``.

        Flows: the exact log-density. VAEs: the ELBO.
        """

    @abstractmethod
    def log_prob_bound(self, x: Tensor, k: int) -> Tensor:
        """VAEs: the importance-weighted bound IWAE-k; flows: equal to ``log_prob``."""

    @abstractmethod
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """``n`` samples in data space: integer levels (as floats) for image data, reals otherwise."""

    @abstractmethod
    def loss(self, x: Tensor) -> Tensor:
        """Scalar training objective to minimise, in nats per example (mean over the batch)."""

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless ``x`` is a batch ``(B, *data_shape)`` of this model's inputs."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"{type(self).__name__} expects inputs of shape (batch, *{self.data_shape}), got {tuple(x.shape)}; "
                "pass a batch of examples of the dataset the model was built for"
            )

    def initialize(self, x: Tensor) -> None:
        """Data-dependent initialisation (e.g. Glow's actnorm), called by the training engine
        once, with the first training batch in the model's input space, before the first
        step of a fresh run (never on resume). The default does nothing."""

    def diagnostics(self) -> dict[str, float]:
        """Model-specific counters recorded with the metrics (e.g. FFJORD's function
        evaluations). The default has none."""
        return {}

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
