"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60,000 train + 10,000 test Zalando articles, 28×28, 256 levels.

Raw files: the four gzip'd IDX files (:data:`vaeflow.data.download.RAW_FILES`), from
``resources/fashion_mnist/`` or the ``path`` option. The official test set is kept; val
is ``val_fraction`` of train, class-stratified with the data seed (see :mod:`.fullsize`).
"""

from __future__ import annotations

from typing import Any

from vaeflow.data.fullsize import build_idx, idx_example_shape, idx_split_sizes
from vaeflow.data.store import PreparedDataset

NAME = "fashion_mnist"


def example_shape(options: dict[str, Any] | None) -> tuple[int, ...]:
    """The shape of one image, ``(1, 28, 28)``, known without the raw files."""
    return idx_example_shape(NAME, options)


def split_sizes(options: dict[str, Any] | None) -> dict[str, int]:
    """The sizes of the train/val/test splits :func:`build` makes, known without the raw files."""
    return idx_split_sizes(NAME, options)


def build(options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """Fashion-MNIST with its official split and a seeded val set from train."""
    return build_idx(NAME, "Fashion-MNIST (Xiao et al. 2017)", options, seed)
