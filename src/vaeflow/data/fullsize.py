"""What the full-size datasets (``mnist_full``, ``fashion_mnist``, ``cifar10``) share.

Each keeps its official train/test split and carves a seeded, class-stratified val set
out of train (:func:`split_official`, with the scikit-learn call that
:func:`~vaeflow.data.splits.stratified_split` makes). Its raw files are read from
``resources/{dataset}/`` or from the directory of the ``path`` option, after their
sha256 has been checked (:func:`~vaeflow.data.download.locate_raw_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vaeflow.data.download import locate_raw_files, raw_file
from vaeflow.data.idx import read_idx_images, read_idx_labels
from vaeflow.data.splits import holdout_size
from vaeflow.data.store import PreparedDataset, fill_options

LEVELS = 256
IDX_DEFAULTS: dict[str, Any] = {"val_fraction": 0.1, "path": None}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: the shape of an MNIST-format image and the official split sizes (fixed by the files' sha256)
IDX_SHAPE = (1, 28, 28)
IDX_OFFICIAL_SIZES = {"train": 60000, "test": 10000}


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)`` of a seeded split that holds out ``fraction`` of the examples per class.

    The held-out part takes :func:`~vaeflow.data.splits.holdout_size` examples, ``ceil(fraction·N)``
    (the rounding of :func:`~vaeflow.data.splits.stratified_split`); both in shuffled order.
    """
    from sklearn.model_selection import train_test_split  # deferred: keeps `import vaeflow.data` light

    kept, held_out = train_test_split(
        np.arange(len(labels)), test_size=holdout_size(len(labels), fraction), stratify=labels, random_state=seed
    )
    return kept.astype(np.int64), held_out.astype(np.int64)


def val_fraction_option(name: str, value: Any) -> float:
    """The ``val_fraction`` option: a number in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"dataset {name!r}: option val_fraction must be a number in (0, 1), got {value!r}")
    return float(value)


def official_split_sizes(name: str, official: dict[str, int], options: dict[str, Any]) -> dict[str, int]:
    """The sizes of the splits :func:`split_official` makes of official train/test sets of ``official`` sizes."""
    n_val = holdout_size(official["train"], val_fraction_option(name, options["val_fraction"]))
    return {"train": official["train"] - n_val, "val": n_val, "test": official["test"]}


def split_official(
    name: str,
    levels: int,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    options: dict[str, Any],
    seed: int,
    source: str,
) -> PreparedDataset:
    """The official train/test split of labelled images with a seeded, class-stratified val set carved from train.

    ``train`` and ``test`` are ``(images, labels)``; val takes ``ceil(options["val_fraction"]·N_train)``
    training images (:func:`stratified_holdout`); the test set is kept whole, in its official order.
    """
    (x, y), (x_test, y_test) = train, test
    kept, val = stratified_holdout(y, val_fraction_option(name, options["val_fraction"]), seed)
    return PreparedDataset(
        name=name,
        levels=levels,
        train=x[kept],
        val=x[val],
        test=x_test,
        train_labels=y[kept],
        val_labels=y[val],
        test_labels=y_test,
        options=options,
        seed=int(seed),
        source=source,
    )


def path_option(dataset: str, value: Any) -> str | None:
    """The ``path`` option: None (use ``resources/{dataset}``) or a non-empty directory name."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"dataset {dataset!r}: option path must be a directory name (a non-empty string) or null, got {value!r}"
        )
    return value


def provenance(dataset: str, files: dict[str, Path]) -> str:
    """``name sha256 <first 12 hex digits>`` of each raw file (verified by :func:`locate_raw_files`),
    for the source line."""
    return ", ".join(f"{name} sha256 {raw_file(dataset, name).sha256[:12]}" for name in files)


def load_idx(dataset: str, files: dict[str, Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": ...}`` of an MNIST-format dataset from its IDX ``files`` by name."""
    out = {}
    for split, (images_name, labels_name) in IDX_FILES.items():
        images = read_idx_images(files[images_name], 28, 28)
        labels = read_idx_labels(files[labels_name], 10)
        if len(images) != len(labels):
            raise ValueError(
                f"dataset {dataset!r}: {files[images_name]} holds {len(images)} images but "
                f"{files[labels_name]} holds {len(labels)} labels; the files do not belong together"
            )
        out[split] = (images, labels)
    return out


def idx_example_shape(dataset: str, options: dict[str, Any] | None) -> tuple[int, ...]:
    """The shape of one image of an MNIST-format dataset, known without its files."""
    fill_options(dataset, options, IDX_DEFAULTS)
    return IDX_SHAPE


def idx_split_sizes(dataset: str, options: dict[str, Any] | None) -> dict[str, int]:
    """The sizes of the splits :func:`build_idx` makes, known without its files."""
    return official_split_sizes(dataset, IDX_OFFICIAL_SIZES, fill_options(dataset, options, IDX_DEFAULTS))


def build_idx(dataset: str, title: str, options: dict[str, Any] | None, seed: int) -> PreparedDataset:
    """An MNIST-format dataset (28×28, 256 levels, 10 classes): official test set, val carved from train."""
    opts = fill_options(dataset, options, IDX_DEFAULTS)
    files = locate_raw_files(dataset, path_option(dataset, opts["path"]))
    splits = load_idx(dataset, files)
    n_train, n_test = len(splits["train"][0]), len(splits["test"][0])
    source = (
        f"{title}: official {n_train:,}/{n_test:,} train/test split, val carved from train; "
        f"gzip'd IDX files ({provenance(dataset, files)})"
    )
    return split_official(dataset, LEVELS, splits["train"], splits["test"], opts, seed, source)
