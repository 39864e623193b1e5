"""Reader of IDX files, the format of MNIST and Fashion-MNIST (LeCun et al. 1998, "THE MNIST DATABASE").

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the values in C order, big-endian. The
type byte is 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32 or 0x0E
float64. The distributed files are gzip'd (``*-ubyte.gz``); both forms are read.
Anything else (a bad magic, a short or over-long body, a shape other than the one
asked for) raises :class:`IdxFormatError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

#: IDX type byte -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """A file that is not a well-formed IDX file (or not the one expected)."""


def _error(path: Path, what: str) -> IdxFormatError:
    return IdxFormatError(
        f"{path}: {what}. The file is not a valid IDX file of the expected kind (truncated, corrupt or a different "
        f"file): delete it and download it again (`snakemake --until download_data`) or point datasets.<name>.path "
        f"at a directory holding the official files."
    )


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it starts with the gzip magic."""
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise _error(path, f"gzip data cannot be decompressed ({err})") from err


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in IDX file ``path`` (gzip'd or not), in native byte order."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise _error(path, f"only {len(data)} bytes, shorter than the 4-byte magic number")
    zero1, zero2, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0:
        raise _error(path, f"magic number {data[:4].hex()} does not start with two zero bytes")
    if type_code not in IDX_DTYPES:
        raise _error(
            path,
            f"magic number {data[:4].hex()} has unknown type byte 0x{type_code:02x} "
            f"(known: {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})",
        )
    if ndim == 0:
        raise _error(path, "magic number says 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _error(path, f"{len(data)} bytes, shorter than the header of {ndim} dimensions ({header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    body = len(data) - header
    if body != expected:
        raise _error(
            path,
            f"header says shape {shape} of {dtype.name} ({expected} bytes of values) but the file "
            f"holds {body} bytes after the header",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx_images(path: str | os.PathLike, height: int, width: int) -> np.ndarray:
    """uint8 images ``(N, 1, height, width)`` from an IDX file of type uint8 and shape ``(N, height, width)``."""
    path = Path(path)
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[1:] != (height, width):
        raise _error(
            path,
            f"expected uint8 images of shape (N, {height}, {width}), got {array.dtype.name} of shape {array.shape}",
        )
    return array[:, None, :, :]


def read_idx_labels(path: str | os.PathLike, num_classes: int) -> np.ndarray:
    """int64 labels ``(N,)`` in ``0..num_classes-1`` from an IDX file of type uint8 and shape ``(N,)``."""
    path = Path(path)
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise _error(path, f"expected uint8 labels of shape (N,), got {array.dtype.name} of shape {array.shape}")
    if array.size and int(array.max()) >= num_classes:
        raise _error(path, f"label {int(array.max())} is outside 0..{num_classes - 1}")
    return array.astype(np.int64)
