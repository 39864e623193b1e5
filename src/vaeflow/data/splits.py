"""Train/val/test splits: seeded stratified index splits and disjoint row bands of an image.

Labelled image sets (digits, mnist) are split by example with
:func:`stratified_split`; textures are split by *region* with :func:`band_bounds`
and :func:`grid_origins`, so that no val/test patch shares a pixel with a train patch.
"""

from __future__ import annotations

import math

import numpy as np


def check_fractions(dataset: str, val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Validate ``val_fraction`` and ``test_fraction``: each in (0, 1), their sum below 1."""
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"dataset {dataset!r}: option {key} must be a number in (0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"dataset {dataset!r}: val_fraction + test_fraction = {val_fraction + test_fraction:g} "
            f"leaves no training data; make their sum smaller than 1"
        )
    return float(val_fraction), float(test_fraction)


def holdout_size(n: int, fraction: float) -> int:
    """Examples a ``fraction`` of ``n`` holds out: ``ceil(fraction·n)``, scikit-learn's ``train_test_split``
    rounding."""
    return math.ceil(fraction * n)


def stratified_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Sizes of the train/val/test splits :func:`stratified_split` makes of ``n`` examples (known without the data).

    The test set takes ``ceil(test_fraction·N)`` examples, val ``val_fraction·N`` of the rest
    (``ceil(val_fraction/(1 - test_fraction)·rest)``), train what is left.
    """
    n_test = holdout_size(n, test_fraction)
    n_val = holdout_size(n - n_test, val_fraction / (1.0 - test_fraction))
    return {"train": n - n_test - n_val, "val": n_val, "test": n_test}


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(train, val, test)`` of a seeded split that keeps class proportions in every split.

    The splits have the sizes :func:`stratified_sizes` gives; each index array is in shuffled order.
    """
    from sklearn.model_selection import train_test_split  # deferred: keeps `import vaeflow.data` light

    sizes = stratified_sizes(len(labels), val_fraction, test_fraction)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=sizes["test"], stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=sizes["val"], stratify=labels[rest], random_state=seed)
    return train.astype(np.int64), val.astype(np.int64), test.astype(np.int64)


def band_bounds(height: int, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the train (top), val (middle) and test (bottom) bands.

    The val and test bands are ``round(fraction·height)`` rows (half rounds up);
    train takes the remaining top rows. The three bands tile ``[0, height)``.
    """
    n_test = math.floor(test_fraction * height + 0.5)
    n_val = math.floor(val_fraction * height + 0.5)
    train_stop = height - n_val - n_test
    return {"train": (0, train_stop), "val": (train_stop, train_stop + n_val), "test": (train_stop + n_val, height)}


def grid_origins(row_start: int, row_stop: int, width: int, patch: int, stride: int) -> np.ndarray:
    """Top-left ``(row, col)`` of every ``patch×patch`` window on a ``stride`` grid inside rows
    ``[row_start, row_stop)``.

    Windows start at ``(row_start, 0)`` and never cross ``row_stop`` or ``width``;
    the result is int64 of shape ``(n, 2)``, row-major order.
    """
    rows = np.arange(row_start, row_stop - patch + 1, stride, dtype=np.int64)
    cols = np.arange(0, width - patch + 1, stride, dtype=np.int64)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)
