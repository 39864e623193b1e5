"""vaeflow: a reproducible study comparing variational autoencoders and normalizing flows."""

__version__ = "0.1.0"
