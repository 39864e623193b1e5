"""CIFAR-10 (Krizhevsky 2009): 50,000 train + 10,000 test colour images, 3×32×32, 256 levels, 10 classes.

Raw file: ``cifar-10-python.tar.gz`` (:data:`vaeflow.data.download.RAW_FILES`), from
``resources/cifar10/`` or the ``path`` option, read by :mod:`.cifar_pickle`. The official
test set is kept; val is ``val_fraction`` of train, class-stratified with the data seed.
Option ``grey: true`` turns the images into one channel of ITU-R BT.601 luma
(``round(0.299 R + 0.587 G + 0.114 B)``), e.g. to compare them with the grey datasets.
"""

from __future__ import annotations

from typing import Any

from vaeflow.data.cifar_pickle import luma, read_cifar10_archive
from vaeflow.data.download import locate_raw_files
from vaeflow.data.fullsize import LEVELS, official_split_sizes, path_option, provenance, split_official
from vaeflow.data.store import PreparedDataset, fill_options

NAME = "cifar10"
ARCHIVE = "cifar-10-python.tar.gz"
DEFAULTS: dict[str, Any] = {"val_fraction": 0.1, "grey": False, "path": None}
#: the official split sizes and the height and width of an image (fixed by the archive's sha256)
OFFICIAL_SIZES = {"train": 50000, "test": 10000}
SIZE = (32, 32)


def _checked_options(options: dict[str, Any] | None) -> dict[str, Any]:
    opts = fill_options(NAME, options, DEFAULTS)
    if not isinstance(opts["grey"], bool):
        raise ValueError(f"dataset {NAME!r}: option grey must be true or false, got {opts['grey']!r}")
    return opts


def example_shape(options: dict[str, Any] | None) -> tuple[int, ...]:
    """The shape of one image, ``(3, 32, 32)``, or ``(1, 32, 32)`` with ``grey``, known without the archive."""
    return (1 if _checked_options(options)["grey"] else 3, *SIZE)


def split_sizes(options: dict[str, Any] | None) -> dict[str, int]:
    """The sizes of the train/val/test splits :func:`build` makes, known without the archive."""
    return official_split_sizes(NAME, OFFICIAL_SIZES, _checked_options(options))


def build(options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """CIFAR-10 (RGB, or BT.601 luma with ``grey``) with its official split and a seeded val set from train."""
    opts = _checked_options(options)
    files = locate_raw_files(NAME, path_option(NAME, opts["path"]))
    splits = read_cifar10_archive(files[ARCHIVE])
    if opts["grey"]:
        splits = {split: (luma(x), y) for split, (x, y) in splits.items()}
    n_train, n_test = len(splits["train"][0]), len(splits["test"][0])
    colour = "grey (ITU-R BT.601 luma, rounded half up)" if opts["grey"] else "RGB"
    source = (
        f"CIFAR-10 (Krizhevsky 2009), {colour}: official {n_train:,}/{n_test:,} train/test split, val carved "
        f"from train; python-version pickles ({provenance(NAME, files)})"
    )
    return split_official(NAME, LEVELS, splits["train"], splits["test"], opts, seed, source)
