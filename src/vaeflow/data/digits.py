"""scikit-learn's handwritten digits: 1,797 images of 8×8 pixels with 17 grey levels (0..16).

Source: ``sklearn.datasets.load_digits()`` (the UCI "Optical Recognition of
Handwritten Digits" test set), bundled inside scikit-learn; no download.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaeflow.data.store import PreparedDataset, fill_options, split_labelled

NAME = "digits"
LEVELS = 17
DEFAULTS: dict[str, Any] = {"val_fraction": 0.1, "test_fraction": 0.2}


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 ``(N, 1, 8, 8)`` in 0..16 and their classes as int64."""
    from sklearn.datasets import load_digits  # deferred: keeps `import vaeflow.data` light

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None, :, :]
    return images, bunch.target.astype(np.int64)


def build(options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """A seeded, class-stratified train/val/test split of the digits."""
    opts = fill_options(NAME, options, DEFAULTS)
    import sklearn

    images, labels = load_images()
    source = f"scikit-learn {sklearn.__version__}: sklearn.datasets.load_digits() (UCI optical handwritten digits, 8x8, 0..16)"
    return split_labelled(NAME, LEVELS, images, labels, opts, seed, source)
