"""The study's density models and the one mapping from config names to classes.

Importing the package does not import torch: the classes and :data:`MODELS` load on first
use, so the workflow can read the models' torch-free facts (:mod:`.multiscale`) while it
plans jobs, as it reads :mod:`vaeflow.data` (planning should not pay for torch).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaeflow.models.base import DensityModel
    from vaeflow.models.ffjord import FFJORD
    from vaeflow.models.flowpp import FlowPP
    from vaeflow.models.glow import Glow
    from vaeflow.models.iaf import IAF
    from vaeflow.models.maf import MAF
    from vaeflow.models.realnvp import RealNVP
    from vaeflow.models.vae import VAE
    from vaeflow.models.vae_iaf import VAEIAF

    MODELS: dict[str, type[DensityModel]]

# config name -> (module, class) of each model: MODELS, loaded on first use
_CLASSES = {
    "vae": ("vae", "VAE"),
    "realnvp": ("realnvp", "RealNVP"),
    "maf": ("maf", "MAF"),
    "iaf": ("iaf", "IAF"),
    "vae_iaf": ("vae_iaf", "VAEIAF"),
    "glow": ("glow", "Glow"),
    "ffjord": ("ffjord", "FFJORD"),
    "flowpp": ("flowpp", "FlowPP"),
}
_EXPORTS = {cls: module for module, cls in _CLASSES.values()} | {"DensityModel": "base"}


def __getattr__(name: str) -> Any:
    if name == "MODELS":
        models = globals()["MODELS"] = {key: __getattr__(cls) for key, (_, cls) in _CLASSES.items()}
        return models
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    models = globals().get("MODELS") or __getattr__("MODELS")
    if name not in models:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(models))}")
    cls = models[name]
    options = dict(options or {})
    accepted = model_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"accepted options: {', '.join(sorted(accepted))}"
        )
    return cls(tuple(data_shape), levels, **options)


__all__ = [
    "FFJORD",
    "FlowPP",
    "Glow",
    "IAF",
    "MAF",
    "MODELS",
    "DensityModel",
    "RealNVP",
    "VAE",
    "VAEIAF",
    "build_model",
    "model_options",
]
