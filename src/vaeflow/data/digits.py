"""scikit-learn's handwritten digits: 1,797 images of 8×8 pixels with 17 grey levels (0..16).

Source: ``sklearn.datasets.load_digits()`` (the UCI "Optical Recognition of
Handwritten Digits" test set), bundled inside scikit-learn; no download.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaeflow.data.splits import check_fractions, stratified_sizes
from vaeflow.data.store import PreparedDataset, fill_options, split_labelled

NAME = "digits"
LEVELS = 17
N_IMAGES = 1797
SHAPE = (1, 8, 8)
DEFAULTS: dict[str, Any] = {"val_fraction": 0.1, "test_fraction": 0.2}


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 ``(N, 1, 8, 8)`` in 0..16 and their classes as int64."""
    from sklearn.datasets import load_digits  # deferred: keeps `import vaeflow.data` light

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None, :, :]
    if images.shape != (N_IMAGES, *SHAPE):
        raise ValueError(
            f"sklearn.datasets.load_digits() gave images of shape {images.shape}, expected "
            f"{(N_IMAGES, *SHAPE)}; update N_IMAGES and SHAPE in {__name__}"
        )
    return images, bunch.target.astype(np.int64)


def example_shape(options: dict[str, Any] | None) -> tuple[int, ...]:
    """The shape of one example, known without loading the data."""
    fill_options(NAME, options, DEFAULTS)
    return SHAPE


def split_sizes(options: dict[str, Any] | None) -> dict[str, int]:
    """The sizes of the train/val/test splits :func:`build` makes, known without loading the data."""
    opts = fill_options(NAME, options, DEFAULTS)
    return stratified_sizes(N_IMAGES, *check_fractions(NAME, opts["val_fraction"], opts["test_fraction"]))


def build(options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """A seeded, class-stratified train/val/test split of the digits."""
    opts = fill_options(NAME, options, DEFAULTS)
    import sklearn

    images, labels = load_images()
    source = (
        f"scikit-learn {sklearn.__version__}: sklearn.datasets.load_digits() (UCI optical handwritten digits, "
        "8x8, 0..16)"
    )
    return split_labelled(NAME, LEVELS, images, labels, opts, seed, source)
