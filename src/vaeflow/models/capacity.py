"""Matched capacity: the width that brings a model to a study's parameter budget.

A comparison between families means something only at a stated, equal size. A study gives each
dataset one parameter budget (``parameter_budget`` in the config); every model keeps its
architecture (depth, scales, blocks: faithful to its paper) and only its width moves, the option
its class names (:meth:`vaeflow.models.base.DensityModel.width_option`), to the width whose
parameter count is nearest the budget. The benchmarks match peers' sizes the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: how far a fitted model's parameter count may lie from the budget (a factor either way)
TOLERANCE = 1.5
#: widths are searched up to this value (a budget needing more is an error, not a silent cap)
MAX_WIDTH = 4096


def nearest_width(params: Callable[[int], int], target: int, start: int = 16, low: int = 4) -> int:
    """The width ``w >= low`` whose parameter count ``params(w)`` is nearest ``target``.

    The count grows with the width: the upper end of the search doubles from ``start`` until it
    reaches the target (at most :data:`MAX_WIDTH`), then bisection finds the smallest width that
    reaches it, and the nearer of it and the width below wins.
    """
    high = max(start, low)
    while params(high) < target and high < MAX_WIDTH:
        high = min(2 * high, MAX_WIDTH)
    while low < high:
        mid = (low + high) // 2
        if params(mid) < target:
            low = mid + 1
        else:
            high = mid
    return min((low - 1, low), key=lambda w: abs(params(w) - target)) if low > 4 else low


def fit_to_budget(
    name: str, data_shape: tuple[int, ...], levels: int | None, options: Mapping[str, Any], budget: int
) -> dict[str, Any]:
    """``options`` with the model's width option set so that its parameter count is nearest ``budget``.

    Raises ValueError, naming the model, the width option and the count reached, when no width
    brings the count within a factor :data:`TOLERANCE` of the budget (the other options make the
    model too large or too small for it: change its depth or the budget).
    """
    from vaeflow.models import MODELS, build_model, model_options

    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    key = MODELS[name].width_option(tuple(data_shape))
    defaults = model_options(MODELS[name])

    def count(width: int) -> int:
        return build_model(name, data_shape, levels, {**options, key: width}).num_parameters()

    width = nearest_width(count, budget, int(options.get(key, defaults.get(key, 16))))
    reached = count(width)
    if not budget / TOLERANCE <= reached <= budget * TOLERANCE:
        raise ValueError(
            f"model {name!r} on data of shape {tuple(data_shape)}: no {key} brings it within a factor {TOLERANCE} of "
            f"the parameter budget {budget:,} ({key}={width} gives {reached:,}); change its other options "
            f"(depth, blocks, scales) or the dataset's parameter_budget in the config"
        )
    return {**options, key: width}
