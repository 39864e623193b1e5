"""The prepared dataset and its on-disk form.

:class:`PreparedDataset` holds the three splits of one dataset (plus labels and the
options, seed and source that made them). :func:`save_prepared` writes it as
``results/data/{name}.npz`` (the arrays) and ``results/data/{name}.json`` (a manifest
with shapes, dtypes, split sizes and the sha256 of every array); both files are
written atomically. :func:`load_prepared` reads them back and verifies every hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from vaeflow.data.splits import check_fractions, stratified_split

SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST_FORMAT = 1


class DatasetChecksumError(ValueError):
    """A prepared dataset on disk does not match its manifest (corrupt, edited or incomplete)."""


@dataclass(frozen=True, eq=False, repr=False)
class PreparedDataset:
    """The train/val/test arrays of one dataset, ready for training.

    Images are uint8 grey levels of shape ``(N, 1, H, W)`` with ``levels = K``;
    continuous data are float32 of shape ``(N, D)`` with ``levels = None``.
    """

    name: str
    levels: int | None
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    val_labels: np.ndarray | None
    test_labels: np.ndarray | None
    options: dict
    seed: int
    source: str

    def __post_init__(self) -> None:
        shape, dtype = self.train.shape[1:], self.train.dtype
        for split in SPLITS:
            a = self.split(split)
            if not isinstance(a, np.ndarray) or a.ndim < 2:
                raise ValueError(
                    f"dataset {self.name!r}: split {split!r} must be an array (N, ...), got {type(a).__name__}"
                )
            if a.shape[1:] != shape or a.dtype != dtype:
                raise ValueError(
                    f"dataset {self.name!r}: split {split!r} has examples {a.shape[1:]} {a.dtype}, "
                    f"but train has {shape} {dtype}; every split must share shape and dtype"
                )
            y = self.labels(split)
            if y is not None and (y.ndim != 1 or len(y) != len(a)):
                raise ValueError(f"dataset {self.name!r}: {split}_labels has shape {y.shape}, expected ({len(a)},)")
        if self.levels is not None and self.levels < 2:
            raise ValueError(f"dataset {self.name!r}: levels must be None or >= 2, got {self.levels}")
        try:
            json.dumps(self.options)
        except TypeError as err:
            raise ValueError(f"dataset {self.name!r}: options must be JSON-serialisable ({err})") from err

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 14, 14)`` or ``(2,)``."""
        return tuple(int(s) for s in self.train.shape[1:])

    @property
    def num_dims(self) -> int:
        """D, the number of dimensions of one example."""
        return math.prod(self.example_shape)

    def split(self, name: str) -> np.ndarray:
        """The array of split ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r} of dataset {self.name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def labels(self, name: str) -> np.ndarray | None:
        """The labels of split ``name``, or None where the dataset has none."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r} of dataset {self.name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, f"{name}_labels")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by its npz key: the splits and, where present, their labels."""
        out = {split: self.split(split) for split in SPLITS}
        for split in SPLITS:
            y = self.labels(split)
            if y is not None:
                out[f"{split}_labels"] = y
        return out

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self.split(s))}" for s in SPLITS)
        return (
            f"PreparedDataset(name={self.name!r}, levels={self.levels}, example_shape={self.example_shape}, "
            f"dtype={self.train.dtype}, {sizes}, seed={self.seed}, options={self.options})"
        )


def fill_options(dataset: str, options: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``options``; an unknown key raises ValueError naming it."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ValueError(f"dataset {dataset!r}: options must be a mapping, got {type(options).__name__}")
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(
            f"dataset {dataset!r} has no option {', '.join(map(repr, unknown))}; "
            f"allowed options: {', '.join(sorted(defaults))}. Fix the datasets.{dataset} block of the config."
        )
    filled = {key: (list(value) if isinstance(value, (list, tuple)) else value) for key, value in defaults.items()}
    filled.update({key: (list(value) if isinstance(value, (list, tuple)) else value) for key, value in options.items()})
    return filled


def int_option(dataset: str, key: str, value: Any, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; anything else raises ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"dataset {dataset!r}: option {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and C-order bytes (a reshape or cast changes it)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}|{list(a.shape)}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in its directory, then ``os.replace`` it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name opened with "xb" (not mkstemp) so the file gets the usual umask permissions
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def manifest_of(ds: PreparedDataset) -> dict[str, Any]:
    """The JSON manifest of ``ds``: metadata, split sizes and per-array dtype, shape and sha256."""
    arrays = ds.arrays()
    return {
        "format": MANIFEST_FORMAT,
        "name": ds.name,
        "source": ds.source,
        "levels": ds.levels,
        "example_shape": list(ds.example_shape),
        "num_dims": ds.num_dims,
        "split_sizes": {split: int(len(ds.split(split))) for split in SPLITS},
        "seed": int(ds.seed),
        "options": ds.options,
        "arrays": {
            key: {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": array_sha256(a)} for key, a in arrays.items()
        },
    }


def save_prepared(ds: PreparedDataset, npz_path: str | os.PathLike, manifest_path: str | os.PathLike) -> dict[str, Any]:
    """Write ``ds`` to ``npz_path`` and its manifest to ``manifest_path`` (both atomic); return the manifest."""
    npz_path, manifest_path = Path(npz_path), Path(manifest_path)
    manifest = manifest_of(ds)
    _write_atomically(npz_path, lambda fh: np.savez(fh, **ds.arrays()))
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    _write_atomically(manifest_path, lambda fh: fh.write(text.encode()))
    return manifest


def _checksum_error(name: str, what: str, npz_path: Path, manifest_path: Path) -> DatasetChecksumError:
    return DatasetChecksumError(
        f"prepared dataset {name!r}: {what} ({npz_path} vs. manifest {manifest_path}). "
        f"The file is corrupt, edited or half-written: delete results/data/{name}.npz and .json "
        f"and rerun `snakemake` to prepare it again."
    )


def load_prepared(npz_path: str | os.PathLike, manifest_path: str | os.PathLike | None = None) -> PreparedDataset:
    """Read a dataset written by :func:`save_prepared`, verifying every array's sha256.

    ``manifest_path`` defaults to ``npz_path`` with a ``.json`` suffix. A missing
    manifest, a missing or extra array, or a hash mismatch raises DatasetChecksumError.
    """
    npz_path = Path(npz_path)
    manifest_path = npz_path.with_suffix(".json") if manifest_path is None else Path(manifest_path)
    name = npz_path.stem
    if not npz_path.is_file():
        raise FileNotFoundError(f"prepared dataset {name!r}: {npz_path} does not exist; run `snakemake` to prepare it")
    if not manifest_path.is_file():
        raise _checksum_error(name, "the manifest is missing", npz_path, manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
        name = manifest["name"]
        expected = manifest["arrays"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise _checksum_error(name, f"the manifest is unreadable ({err!r})", npz_path, manifest_path) from err

    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as err:  # zipfile.BadZipFile, ValueError, OSError: all mean a broken file
        raise _checksum_error(name, f"the npz cannot be read ({err!r})", npz_path, manifest_path) from err

    for key in (*SPLITS, *expected):
        if key not in arrays:
            raise _checksum_error(name, f"array {key!r} is missing from the npz", npz_path, manifest_path)
    for key, a in arrays.items():
        if key not in expected:
            raise _checksum_error(name, f"array {key!r} is in the npz but not in the manifest", npz_path, manifest_path)
        if array_sha256(a) != expected[key]["sha256"]:
            raise _checksum_error(
                name,
                f"array {key!r} ({a.dtype}, shape {a.shape}) has a different sha256 than the manifest records "
                f"({expected[key]['dtype']}, shape {tuple(expected[key]['shape'])})",
                npz_path,
                manifest_path,
            )

    return PreparedDataset(
        name=name,
        levels=manifest["levels"],
        train=arrays["train"],
        val=arrays["val"],
        test=arrays["test"],
        train_labels=arrays.get("train_labels"),
        val_labels=arrays.get("val_labels"),
        test_labels=arrays.get("test_labels"),
        options=manifest["options"],
        seed=manifest["seed"],
        source=manifest["source"],
    )


def split_labelled(
    name: str,
    levels: int,
    images: np.ndarray,
    labels: np.ndarray,
    options: dict[str, Any],
    seed: int,
    source: str,
) -> PreparedDataset:
    """A seeded, class-stratified train/val/test split of labelled images (fractions from ``options``)."""
    val_fraction, test_fraction = check_fractions(name, options["val_fraction"], options["test_fraction"])
    train, val, test = stratified_split(labels, val_fraction, test_fraction, seed)
    return PreparedDataset(
        name=name,
        levels=levels,
        train=images[train],
        val=images[val],
        test=images[test],
        train_labels=labels[train],
        val_labels=labels[val],
        test_labels=labels[test],
        options=options,
        seed=int(seed),
        source=source,
    )
