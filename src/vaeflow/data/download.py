"""The raw files of the full-size datasets: where they come from, their sha256, download and lookup.

Each full-size dataset is built from official files (:data:`RAW_FILES`) that live in
``resources/{dataset}/`` (fetched by ``python -m vaeflow download-data``, the workflow's
``download_data`` rule) or in a directory the user names with the dataset option ``path``.
Every file is checked against the sha256 and size recorded here before it is used:

* MNIST: the four gzip'd IDX files from the ossci-datasets S3 mirror that torchvision uses
  (yann.lecun.com no longer serves them); sha256 as listed in torchvision's
  ``prototype/datasets/_builtin/mnist.py``, sizes as on the original MNIST page.
* Fashion-MNIST: the four gzip'd IDX files from Zalando's S3 bucket, over https from its REST
  endpoint (the README and torchvision link the bucket's *website* endpoint, which serves only
  http); sha256 as in the same torchvision file (their md5 match the Fashion-MNIST README).
* CIFAR-10: ``cifar-10-python.tar.gz`` from the University of Toronto; sha256 as in
  torchvision's ``prototype/datasets/_builtin/cifar.py`` and Keras' ``cifar10.py``.

Every URL is https, and a redirect away from https is refused, so what arrives is what the
host sent. A download goes to a temporary file beside its destination, is verified, then moved
in place (:func:`vaeflow.io.atomic_path`); a failed, partial, oversized or corrupt download is
deleted, so a file under ``resources/`` is always a verified one. The recorded size caps the
stream: a server that announces or sends more is cut off before it can fill the disk.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaeflow.io import atomic_path

#: the directory (relative to the working directory, the repository root for the workflow)
#: that holds ``{dataset}/{file}`` when no ``path`` option is given
RESOURCES = Path("resources")
CHUNK = 1 << 20


@dataclass(frozen=True)
class RawFile:
    """One official file: its name, where to fetch it, its sha256 and its size in bytes."""

    name: str
    url: str
    sha256: str
    size: int


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
# the bucket's REST endpoint: same objects as the http-only website endpoint, over https
_FASHION_URL = "https://fashion-mnist.s3.eu-central-1.amazonaws.com/"

RAW_FILES: dict[str, tuple[RawFile, ...]] = {
    "mnist_full": (
        RawFile(
            "train-images-idx3-ubyte.gz",
            _MNIST_URL + "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9912422,
        ),
        RawFile(
            "train-labels-idx1-ubyte.gz",
            _MNIST_URL + "train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28881,
        ),
        RawFile(
            "t10k-images-idx3-ubyte.gz",
            _MNIST_URL + "t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1648877,
        ),
        RawFile(
            "t10k-labels-idx1-ubyte.gz",
            _MNIST_URL + "t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4542,
        ),
    ),
    "fashion_mnist": (
        RawFile(
            "train-images-idx3-ubyte.gz",
            _FASHION_URL + "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            26421880,
        ),
        RawFile(
            "train-labels-idx1-ubyte.gz",
            _FASHION_URL + "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            29515,
        ),
        RawFile(
            "t10k-images-idx3-ubyte.gz",
            _FASHION_URL + "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            4422102,
        ),
        RawFile(
            "t10k-labels-idx1-ubyte.gz",
            _FASHION_URL + "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            5148,
        ),
    ),
    "cifar10": (
        RawFile(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            170498071,
        ),
    ),
}


class RawFileError(ValueError):
    """A raw file that is missing or is not the official file (wrong sha256 or size)."""


class DownloadError(RuntimeError):
    """A download that failed or delivered something other than the official file."""


def raw_files(dataset: str) -> tuple[RawFile, ...]:
    """The official files of full-size ``dataset``; ValueError naming the known ones otherwise."""
    if dataset not in RAW_FILES:
        raise ValueError(
            f"dataset {dataset!r} has no raw files to download; datasets with raw files: {', '.join(RAW_FILES)}"
        )
    return RAW_FILES[dataset]


def raw_file(dataset: str, name: str) -> RawFile:
    """The official file ``name`` of ``dataset``."""
    for entry in raw_files(dataset):
        if entry.name == name:
            return entry
    raise ValueError(
        f"dataset {dataset!r} has no raw file {name!r}; its files: {', '.join(f.name for f in raw_files(dataset))}"
    )


def raw_dir(dataset: str, path: str | os.PathLike | None = None) -> Path:
    """Where ``dataset``'s raw files are read from: the ``path`` option, else ``resources/{dataset}``."""
    return Path(path) if path else RESOURCES / dataset


def raw_input_paths(dataset: str, options: dict | None) -> list[str]:
    """The raw files the prepare step of ``dataset`` reads (``[]`` for the embedded datasets), for the workflow.

    ``resources/{dataset}/<file>`` (made by the download rule), or ``<path>/<file>`` when
    the dataset's ``path`` option is set (no download then).
    """
    if dataset not in RAW_FILES:
        return []
    folder = raw_dir(dataset, (options or {}).get("path"))
    return [str(folder / entry.name) for entry in RAW_FILES[dataset]]


def file_digest(path: str | os.PathLike) -> tuple[str, int]:
    """sha256 (hex) and size in bytes of the file at ``path``, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _mismatch(expected: RawFile, sha256: str, size: int) -> str:
    return f"expected sha256 {expected.sha256} ({expected.size} bytes), got sha256 {sha256} ({size} bytes)" + (
        "; the file is shorter than the official one (truncated)" if size < expected.size else ""
    )


def _how_to_fix(dataset: str, entry: RawFile, later: bool = False) -> str:
    return (
        f"Retry the download{' later' if later else ''} (`snakemake --cores 1 --until download_data`, or "
        f"`python -m vaeflow download-data --dataset {dataset}`), or download {entry.url} by hand, check its "
        f"sha256 is {entry.sha256}, and set datasets.{dataset}.path to the directory that holds it."
    )


def verify_raw_file(dataset: str, path: str | os.PathLike, entry: RawFile) -> None:
    """Check that the file at ``path`` is ``entry`` (sha256 and size); RawFileError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise RawFileError(f"raw file {path} of dataset {dataset!r} does not exist. {_how_to_fix(dataset, entry)}")
    sha256, size = file_digest(path)
    if sha256 != entry.sha256 or size != entry.size:
        raise RawFileError(
            f"raw file {path} of dataset {dataset!r} is not the official {entry.name}: "
            f"{_mismatch(entry, sha256, size)}. {_how_to_fix(dataset, entry)}"
        )


def locate_raw_files(dataset: str, path: str | os.PathLike | None = None) -> dict[str, Path]:
    """The verified raw files of ``dataset`` by name, from the ``path`` option or ``resources/{dataset}``.

    A missing file or one whose sha256 or size differs from :data:`RAW_FILES` raises
    RawFileError naming the file and saying how to get the right one.
    """
    folder = raw_dir(dataset, path)
    entries = raw_files(dataset)
    if path and not folder.is_dir():
        raise RawFileError(
            f"datasets.{dataset}.path = {str(path)!r} is not a directory; set it to a directory "
            f"holding {', '.join(e.name for e in entries)}, or remove it to download them into "
            f"{RESOURCES / dataset}"
        )
    found: dict[str, Path] = {}
    for entry in entries:
        file = folder / entry.name
        if not file.is_file():
            where = (
                f"the directory datasets.{dataset}.path = {str(path)!r}"
                if path
                else f"{folder} (no datasets.{dataset}.path is set)"
            )
            raise RawFileError(
                f"raw file {entry.name} of dataset {dataset!r} is missing from {where}. {_how_to_fix(dataset, entry)}"
            )
        verify_raw_file(dataset, file, entry)
        found[entry.name] = file
    return found


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, except from https to anything else: such a downgrade would undo the table's https."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if req.full_url.lower().startswith("https:") and not newurl.lower().startswith("https:"):
            raise urllib.error.HTTPError(
                req.full_url, code, f"{msg} - refused the redirect from https to {newurl}", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open_url(url: str, timeout: float):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(url, headers={"User-Agent": "vaeflow-download/1 (urllib)"})
    return urllib.request.build_opener(_HttpsOnlyRedirects).open(request, timeout=timeout)


def _check_announced_size(dataset: str, entry: RawFile, dest: Path, announced: str | None) -> None:
    """Refuse a reply whose Content-Length is not the official size, before reading any of its body."""
    if announced is None or (announced.strip().isdigit() and int(announced) == entry.size):
        return
    raise DownloadError(
        f"the server at {entry.url} announces {announced.strip()!r} bytes (Content-Length) for "
        f"{entry.name} of dataset {dataset!r}, but the official file is {entry.size} bytes; the "
        f"download was refused before any of it was read and nothing was written to {dest}. "
        f"{_how_to_fix(dataset, entry)}"
    )


def _sent_more(dataset: str, entry: RawFile, dest: Path) -> DownloadError:
    """The error for a stream that runs past the official size: cut off there so it cannot fill the disk."""
    return DownloadError(
        f"the server at {entry.url} sent more than the {entry.size} bytes of {entry.name} of dataset "
        f"{dataset!r}, so it is not the official file (a misconfigured mirror or proxy, or a tampered "
        f"reply); the download was stopped at the first byte past that size and deleted, and nothing "
        f"was written to {dest}. {_how_to_fix(dataset, entry, later=True)}"
    )


def download_file(
    dataset: str,
    name: str,
    dest_dir: str | os.PathLike | None = None,
    timeout: float = 60.0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Fetch raw file ``name`` of ``dataset`` into ``dest_dir`` (default ``resources/{dataset}``); return its path.

    A destination that already holds the verified file is kept. Otherwise the file is
    streamed into a temporary file in ``dest_dir`` while its sha256 is computed; only if
    sha256 and size match is it moved onto the destination (``os.replace``). The stream is
    capped by the recorded size, so a bad server cannot fill the disk before the sha256
    check: a Content-Length other than the size is refused up front, and the download
    stops at the first byte past the size (at most size + 1 bytes are read, size written).
    On any failure the temporary file is deleted and DownloadError says what happened and
    what to do. ``progress(done, total)`` is called after each chunk written when given.
    """
    entry = raw_file(dataset, name)
    folder = Path(dest_dir) if dest_dir is not None else RESOURCES / dataset
    dest = folder / entry.name
    if dest.is_file() and file_digest(dest) == (entry.sha256, entry.size):
        return dest
    h = hashlib.sha256()
    size = 0
    with atomic_path(dest) as tmp:  # moved onto dest only if the block ends without an error; deleted otherwise
        try:
            with _open_url(entry.url, timeout) as response, open(tmp, "wb") as out:
                _check_announced_size(dataset, entry, dest, response.headers.get("Content-Length"))
                while chunk := response.read(min(CHUNK, entry.size + 1 - size)):  # one byte past the size at most
                    if size + len(chunk) > entry.size:
                        raise _sent_more(dataset, entry, dest)
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(size, entry.size)
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise DownloadError(
                f"downloading {entry.url} to {dest} failed after {size} of {entry.size} bytes "
                f"({type(err).__name__}: {err}); nothing was written to {dest}. "
                f"{_how_to_fix(dataset, entry)}"
            ) from err
        if (h.hexdigest(), size) != (entry.sha256, entry.size):
            raise DownloadError(
                f"the download of {entry.url} is not the official {entry.name}: "
                f"{_mismatch(entry, h.hexdigest(), size)}; it was deleted and nothing was written to "
                f"{dest}. {_how_to_fix(dataset, entry)}"
            )
    return dest


def download_dataset(dataset: str, dest_dir: str | os.PathLike | None = None, timeout: float = 60.0) -> list[Path]:
    """Fetch every raw file of ``dataset`` (see :func:`download_file`); return their paths."""
    return [download_file(dataset, entry.name, dest_dir, timeout) for entry in raw_files(dataset)]
