"""How a run was trained, in words: the study reports it beside every number.

Its own module so that evaluation depends on this function alone, not on all of
:mod:`vaeflow.config` (an edit there would otherwise look like a change to every evaluation).
"""

from __future__ import annotations

from typing import Any


def training_objective(run: dict[str, Any], exact: bool, bound_name: str = "ELBO") -> str:
    """How a run was trained, in words: the study reports it beside every number."""
    training, options = run["training"], run["options"]
    if "teacher" in training:
        return f"density distillation from {training['teacher']}"
    if options.get("iwae_k", 1) > 1:
        return f"IWAE-{options['iwae_k']} bound"
    if options.get("beta", 1.0) != 1.0:
        return f"β-ELBO (β = {options['beta']})"
    return "maximum likelihood" if exact else f"its {bound_name}"
