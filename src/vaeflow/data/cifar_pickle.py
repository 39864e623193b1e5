"""Reader of the CIFAR-10 "python version" archive (Krizhevsky 2009, "Learning Multiple Layers of
Features from Tiny Images"; https://www.cs.toronto.edu/~kriz/cifar.html).

``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5``
(the training set) and ``test_batch``: pickles (Python 2 protocol) of a dict whose
``b"data"`` is a uint8 array ``(N, 3072)``, each row 1,024 red, then 1,024 green, then
1,024 blue values of a 32×32 image in row-major order, and whose ``b"labels"`` is a
list of ``N`` classes in 0..9. The pickles are read with an unpickler that builds only
numpy arrays and plain Python values, so a doctored file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
NUM_CLASSES = 10
ROW = 3 * 32 * 32

# the only globals a numpy-array pickle refers to (numpy 1 and 2 module names, protocols 2-5)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class CifarFormatError(ValueError):
    """An archive or batch that is not laid out as the CIFAR-10 python version."""


def _error(where: str, what: str) -> CifarFormatError:
    return CifarFormatError(
        f"{where}: {what}. This is not the official cifar-10-python.tar.gz (truncated, corrupt or a different "
        f"file): delete it and download it again (`snakemake --until download_data`) or point "
        f"datasets.cifar10.path at a directory holding the official archive."
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and builtin values only; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        try:
            from numpy._core import multiarray, numeric  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1
            from numpy.core import multiarray, numeric
        return getattr(numeric if name == "_frombuffer" else multiarray, name)


def parse_batch(payload: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, 3, 32, 32)`` and labels int64 ``(N,)`` of one pickled batch (``where`` names it in errors)."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except Exception as err:  # UnpicklingError, EOFError, ValueError...: all mean a broken or foreign pickle
        raise _error(where, f"the batch cannot be unpickled ({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict):
        raise _error(where, f"the batch is a {type(batch).__name__}, expected a dict")
    for key in (b"data", b"labels"):
        if key not in batch:
            raise _error(where, f"the batch has no key {key!r} (keys: {sorted(map(repr, batch))})")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise _error(where, f"b'data' is {dtype} of shape {shape}, expected uint8 of shape (N, {ROW})")
    labels = batch[b"labels"]
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise _error(where, "b'labels' is not a list of integers")
    if len(labels) != len(data):
        raise _error(where, f"b'labels' has {len(labels)} entries but b'data' has {len(data)} rows")
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise _error(where, f"labels must lie in 0..{NUM_CLASSES - 1}, found {int(y.min())}..{int(y.max())}")
    return data.reshape(len(data), 3, 32, 32).copy(), y


def read_cifar10_archive(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": (images, labels)}`` from ``cifar-10-python.tar.gz``.

    Train is data_batch_1..5 concatenated in order, test is test_batch; images uint8
    ``(N, 3, 32, 32)`` (RGB), labels int64 ``(N,)``.
    """
    path = Path(path)
    try:
        archive = tarfile.open(path, mode="r:gz")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise _error(str(path), f"not a readable .tar.gz ({err})") from err
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with archive:
        for name in (*TRAIN_BATCHES, TEST_BATCH):
            member = f"{FOLDER}/{name}"
            where = f"{path} member {member}"
            try:
                info = archive.getmember(member)
            except KeyError:
                raise _error(str(path), f"member {member} is missing") from None
            except (tarfile.TarError, OSError, EOFError) as err:
                raise _error(str(path), f"the archive cannot be listed ({err})") from err
            if not info.isfile():
                raise _error(where, "the member is not a regular file")
            try:
                handle = archive.extractfile(info)
                payload = handle.read() if handle is not None else b""
            except (tarfile.TarError, OSError, EOFError) as err:
                raise _error(where, f"the member cannot be read ({err})") from err
            batches[name] = parse_batch(payload, where)
    train = [batches[name] for name in TRAIN_BATCHES]
    return {
        "train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        "test": batches[TEST_BATCH],
    }


def luma(images: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of RGB uint8 images ``(N, 3, H, W)`` as ``(N, 1, H, W)`` uint8, rounded half up.

    ``Y = round(0.299 R + 0.587 G + 0.114 B)``, computed exactly in integers as
    ``(299 R + 587 G + 114 B + 500) // 1000``; the weights sum to 1, so Y stays in 0..255.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"luma expects uint8 RGB images (N, 3, H, W), got {images.dtype} of shape {images.shape}")
    rgb = images.astype(np.int64)
    y = (299 * rgb[:, 0] + 587 * rgb[:, 1] + 114 * rgb[:, 2] + 500) // 1000
    return y[:, None].astype(np.uint8)
