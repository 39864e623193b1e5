"""The study's density models and the one mapping from config names to classes."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from vaeflow.models.base import DensityModel
from vaeflow.models.ffjord import FFJORD
from vaeflow.models.flowpp import FlowPP
from vaeflow.models.glow import Glow
from vaeflow.models.iaf import IAF
from vaeflow.models.maf import MAF
from vaeflow.models.realnvp import RealNVP
from vaeflow.models.vae import VAE
from vaeflow.models.vae_iaf import VAEIAF

MODELS: dict[str, type[DensityModel]] = {"vae": VAE, "realnvp": RealNVP, "maf": MAF, "iaf": IAF, "vae_iaf": VAEIAF, "glow": Glow, "ffjord": FFJORD, "flowpp": FlowPP}


def model_options(cls: type[DensityModel]) -> dict[str, Any]:
    """Keyword options of a model's constructor and their defaults (everything after ``levels``)."""
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name: p.default
        for name, p in parameters.items()
        if name not in ("self", "data_shape", "levels") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def build_model(
    name: str, data_shape: tuple[int, ...], levels: int | None, options: Mapping[str, Any] | None = None
) -> DensityModel:
    """Instantiate ``MODELS[name](data_shape, levels, **options)``, checking the name and option keys."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    options = dict(options or {})
    accepted = model_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"accepted options: {', '.join(sorted(accepted))}"
        )
    return cls(tuple(data_shape), levels, **options)


__all__ = ["FFJORD", "FlowPP", "Glow", "IAF", "MAF", "MODELS", "DensityModel", "RealNVP", "VAE", "VAEIAF", "build_model", "model_options"]
