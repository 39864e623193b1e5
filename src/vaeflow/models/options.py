"""Validation of the models' constructor options, written once.

Every model checks its options here, so that every message has the same form: which model,
which option, the value it got, and what to give instead (the options come from the model's
block of the study configuration, ``models.<name>``). Booleans are refused wherever a count is
expected (``True`` is an ``int`` in Python, and a ``True`` where a number belongs is always a
mistake in the configuration); whole-valued floats such as ``2.0`` are accepted as counts.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection


def _where(model: str, option: str) -> str:
    return f"{model} option {option!r}"


def check_count(model: str, option: str, value: object, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is a whole number ``>= minimum`` (not a bool); else ValueError.

    The message calls it "a positive integer" for ``minimum = 1``, else "an integer >= minimum".
    """
    whole = (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()  # type: ignore[arg-type]
    )
    if not whole or value < minimum:  # type: ignore[operator]
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(
            f"{_where(model, option)} must be {kind}, got {value!r}; "
            f"give a whole number >= {minimum} in the model's options (models.<name> in the study configuration)"
        )
    return int(value)  # type: ignore[arg-type]


def check_optional_count(model: str, option: str, value: object, minimum: int = 1) -> int | None:
    """:func:`check_count`, or ``None`` for ``None`` (an option whose default is derived from another)."""
    return None if value is None else check_count(model, option, value, minimum)


def check_positive(model: str, option: str, value: object) -> float:
    """``value`` as a ``float`` if it is a number ``> 0`` (not a bool); else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{_where(model, option)} must be a positive number, got {value!r}; give a number > 0")
    return float(value)


def check_choice(model: str, option: str, value: object, choices: Collection[str], why: str = "") -> str:
    """``value`` if it is one of ``choices``; else ValueError listing them (``why``: a note on the choices)."""
    if not isinstance(value, str) or value not in choices:
        note = f" ({why})" if why else ""
        raise ValueError(f"{_where(model, option)} must be one of {', '.join(map(repr, choices))}{note}, got {value!r}")
    return value


def check_levels(model: str, levels: int | None) -> None:
    """Image data have ``levels = K >= 2`` grey levels; real data ``None``."""
    if levels is not None and levels < 2:
        raise ValueError(
            f"{model}: levels must be >= 2 for image data (the number of grey levels K) or None for real data, "
            f"got {levels!r}"
        )


def check_rank(model: str, data_shape: tuple[int, ...]) -> None:
    """Models take images ``(C, H, W)`` or vectors ``(D,)``."""
    if len(data_shape) not in (1, 3):
        raise ValueError(f"{model}: data_shape must be (C, H, W) for images or (D,) for vectors, got {data_shape}")
