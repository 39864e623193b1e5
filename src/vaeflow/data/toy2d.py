"""Two-dimensional toy densities, sampled with the seed.

Written after the toy densities of the normalizing-flow literature (Grathwohl et al.
2019, FFJORD, ``lib/toy_data.py``; Papamakarios et al., Durkan et al.): every sampler
takes ``(n, rng)`` and returns float32 points ``(n, 2)`` roughly inside ``[-4, 4]^2``
and the int64 mixture component of each point (moon, cluster, square, arm).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vaeflow.data.store import SPLITS, PreparedDataset, fill_options, int_option

NAME = "toy2d"
DEFAULTS: dict[str, Any] = {"density": "two_moons", "n_train": 20000, "n_val": 2000, "n_test": 5000}

Sampler = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _balanced_components(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` component indices in ``0..k-1``, as equal in count as possible, in random order."""
    return rng.permutation(np.arange(n) % k).astype(np.int64)


def two_moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles (radius 1) with N(0, 0.1²) noise, scaled by 2 and centred."""
    moon = _balanced_components(n, 2, rng)
    t = rng.uniform(0.0, np.pi, n)
    x = np.where(moon == 0, np.cos(t), 1.0 - np.cos(t))
    y = np.where(moon == 0, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + rng.normal(0.0, 0.1, (n, 2))
    return (2.0 * points + np.array([-1.0, -0.5])).astype(np.float32), moon


EIGHT_GAUSSIANS_RADIUS = 4.0 / np.sqrt(2.0)
EIGHT_GAUSSIANS_STD = 0.5 / np.sqrt(2.0)


def eight_gaussian_centers() -> np.ndarray:
    """The 8 cluster centres, equally spaced on a circle of radius ``4/√2``."""
    angles = np.arange(8) * (2.0 * np.pi / 8)
    return EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def eight_gaussians(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An equal mixture of 8 isotropic Gaussians (sd ``0.5/√2``) on a circle of radius ``4/√2``."""
    cluster = _balanced_components(n, 8, rng)
    points = eight_gaussian_centers()[cluster] + rng.normal(0.0, EIGHT_GAUSSIANS_STD, (n, 2))
    return points.astype(np.float32), cluster


CHECKERBOARD_CELL = 2.0


def checkerboard_black(points: np.ndarray) -> np.ndarray:
    """Whether each point lies in a black square: ``floor(x/2) + floor(y/2)`` even, inside ``[-4, 4)^2``."""
    cells = np.floor(np.asarray(points, dtype=np.float64) / CHECKERBOARD_CELL).astype(np.int64)
    inside = np.all((cells >= -2) & (cells <= 1), axis=1)
    return inside & (cells.sum(axis=1) % 2 == 0)


def checkerboard(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the 8 black squares (side 2) of a 4×4 checkerboard covering ``[-4, 4)^2``."""
    square = _balanced_components(n, 8, rng)
    col = square % 4  # 0..3, left to right
    row = 2 * (square // 4) + (col % 2)  # 0..3, rows with col+row even: the black squares
    corner = (CHECKERBOARD_CELL * np.stack([col, row], axis=1) - 4.0).astype(np.float32)
    points = corner + (CHECKERBOARD_CELL * rng.uniform(0.0, 1.0, (n, 2))).astype(np.float32)
    # float32 rounding may land a point on the far edge, i.e. in the neighbouring white square
    far_edge = np.nextafter(corner + np.float32(CHECKERBOARD_CELL), np.float32(-np.inf))
    return np.clip(points, corner, far_edge), square


def pinwheel(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Five curved arms: radial N(1, 0.3²) × tangential N(0, 0.1²), rotated by ``arm·2π/5 + 0.25·exp(r)``, ×2."""
    arm = _balanced_components(n, 5, rng)
    features = rng.normal(0.0, 1.0, (n, 2)) * np.array([0.3, 0.1])
    features[:, 0] += 1.0
    angles = arm * (2.0 * np.pi / 5) + 0.25 * np.exp(features[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    x = features[:, 0] * cos - features[:, 1] * sin
    y = features[:, 0] * sin + features[:, 1] * cos
    return (2.0 * np.stack([x, y], axis=1)).astype(np.float32), arm


def spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved Archimedean spirals (1.5 turns, point symmetric) with N(0, 0.1²) noise."""
    arm = _balanced_components(n, 2, rng)
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3.0 * np.pi
    x = -np.cos(t) * t + rng.uniform(0.0, 0.5, n)
    y = np.sin(t) * t + rng.uniform(0.0, 0.5, n)
    sign = np.where(arm == 0, 1.0, -1.0)
    points = sign[:, None] * np.stack([x, y], axis=1) / 3.0 + rng.normal(0.0, 0.1, (n, 2))
    return points.astype(np.float32), arm


DENSITIES: dict[str, Sampler] = {
    "two_moons": two_moons,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "pinwheel": pinwheel,
    "spirals": spirals,
}


def _checked_options(options: dict[str, Any] | None) -> dict[str, Any]:
    opts = fill_options(NAME, options, DEFAULTS)
    if opts["density"] not in DENSITIES:
        raise ValueError(
            f"dataset {NAME!r}: unknown density {opts['density']!r}; option density must be one of "
            f"{', '.join(DENSITIES)}"
        )
    opts.update({f"n_{split}": int_option(NAME, f"n_{split}", opts[f"n_{split}"], 1) for split in SPLITS})
    return opts


def example_shape(options: dict[str, Any] | None) -> tuple[int, ...]:
    """The shape of one example, a point of the plane: ``(2,)``."""
    _checked_options(options)
    return (2,)


def split_sizes(options: dict[str, Any] | None) -> dict[str, int]:
    """The sizes of the train/val/test splits: the options ``n_train``, ``n_val``, ``n_test``."""
    opts = _checked_options(options)
    return {split: opts[f"n_{split}"] for split in SPLITS}


def build(options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """Independent train/val/test samples of ``density``; each split has its own seeded stream.

    The streams come from ``SeedSequence(seed).spawn(3)``, so changing ``n_test``
    leaves the train and val samples unchanged.
    """
    opts = _checked_options(options)
    density = opts["density"]
    sizes = split_sizes(opts)

    streams = np.random.SeedSequence(seed).spawn(len(SPLITS))
    arrays: dict[str, np.ndarray] = {}
    for split, stream in zip(SPLITS, streams):
        arrays[split], arrays[f"{split}_labels"] = DENSITIES[density](sizes[split], np.random.default_rng(stream))

    return PreparedDataset(
        name=NAME,
        levels=None,
        **arrays,
        options=opts,
        seed=int(seed),
        source=f"vaeflow.data.toy2d.{density} sampled with numpy.random.default_rng (FFJORD-style 2-D toy density)",
    )
