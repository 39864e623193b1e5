"""The full-size datasets: IDX and CIFAR-10 readers, sha256-checked downloads, the ``path`` route.

Every test builds tiny files in the real formats (gzip'd IDX of 28×28 images; a
cifar-10-python.tar.gz with small batches), computes their sha256 here and puts them
in place of the official checksum table, so nothing is fetched from the internet:
downloads come from ``file://`` URLs or a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gzip
import hashlib
import http.server
import io
import itertools
import math
import pickle
import struct
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vaeflow.cli import main
from vaeflow.config import ConfigError, load_config, validate_config
from vaeflow.data import (
    DATASETS,
    FULL_SIZE_DATASETS,
    IMAGE_DATASETS,
    build_dataset,
    download,
    load_prepared,
    save_prepared,
)
from vaeflow.data.cifar_pickle import CifarFormatError, luma, read_cifar10_archive
from vaeflow.data.download import DownloadError, RawFile, RawFileError, download_file, locate_raw_files
from vaeflow.data.idx import IdxFormatError, read_idx, read_idx_images, read_idx_labels

IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
CIFAR_NAME = "cifar-10-python.tar.gz"


# --------------------------------------------------------------------------- writers of the real formats


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file of ``array``: magic ``00 00 type ndim``, big-endian uint32 dims, big-endian values."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_mnist_files(folder: Path, n_train: int = 40, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """The four gzip'd IDX files of a tiny MNIST-format dataset (classes balanced); returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_y": np.arange(n_train, dtype=np.uint8) % 10,
        "test_x": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in zip(IDX_NAMES, ("train_x", "train_y", "test_x", "test_y")):
        (folder / name).write_bytes(gzip.compress(idx_bytes(arrays[key])))
    return arrays


def cifar_batch(images: np.ndarray, labels: list[int], label: bytes) -> bytes:
    """A pickled CIFAR-10 batch: rows of 1,024 R, 1,024 G, 1,024 B values, labels as a list."""
    batch = {
        b"batch_label": label,
        b"labels": labels,
        b"data": images.reshape(len(images), 3072),
        b"filenames": [b"img_%d.png" % i for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=4)


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def write_cifar_archive(path: Path, per_batch: int = 4, n_test: int = 6, seed: int = 1) -> dict[str, np.ndarray]:
    """A tiny cifar-10-python.tar.gz (5 train batches + test_batch); returns the images and labels written."""
    rng = np.random.default_rng(seed)
    train_x = rng.integers(0, 256, size=(5 * per_batch, 3, 32, 32), dtype=np.uint8)
    train_y = [i % 10 for i in range(5 * per_batch)]
    test_x = rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8)
    test_y = [(7 * i) % 10 for i in range(n_test)]
    members = {}
    for b in range(5):
        rows = slice(b * per_batch, (b + 1) * per_batch)
        members[f"cifar-10-batches-py/data_batch_{b + 1}"] = cifar_batch(
            train_x[rows], train_y[rows], b"training batch"
        )
    members["cifar-10-batches-py/test_batch"] = cifar_batch(test_x, test_y, b"testing batch 1 of 1")
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tar(path, members)
    return {"train_x": train_x, "train_y": np.array(train_y), "test_x": test_x, "test_y": np.array(test_y)}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_for(dataset: str, folder: Path, url_base: str) -> tuple[RawFile, ...]:
    """Checksum-table entries for the files in ``folder``: their own sha256 and size, URLs under ``url_base``."""
    names = (CIFAR_NAME,) if dataset == "cifar10" else IDX_NAMES
    return tuple(RawFile(n, f"{url_base}/{n}", sha256_of(folder / n), (folder / n).stat().st_size) for n in names)


@pytest.fixture()
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, np.ndarray]]:
    """Tiny official-format files of all three datasets under tmp/upstream/<dataset>/, the checksum table
    pointing at them by file:// URL, and the working directory (hence resources/) in tmp/work."""
    arrays: dict[str, dict[str, np.ndarray]] = {}
    table = {}
    for dataset in FULL_SIZE_DATASETS:
        folder = tmp_path / "upstream" / dataset
        if dataset == "cifar10":
            arrays[dataset] = write_cifar_archive(folder / CIFAR_NAME)
        else:
            arrays[dataset] = write_mnist_files(folder, seed=len(dataset))
        table[dataset] = table_for(dataset, folder, folder.as_uri())
    monkeypatch.setattr(download, "RAW_FILES", table)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return arrays


def leftovers(folder: Path) -> list[str]:
    """Temporary (hidden) download files left in ``folder``."""
    return sorted(p.name for p in folder.glob(".*")) if folder.is_dir() else []


# --------------------------------------------------------------------------- IDX reader


def test_idx_reader_returns_exactly_the_written_arrays(tmp_path: Path) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    labels = np.array([9, 0, 4], dtype=np.uint8)
    (tmp_path / "x.gz").write_bytes(gzip.compress(idx_bytes(images.astype(np.uint8))))
    (tmp_path / "y").write_bytes(idx_bytes(labels))  # an uncompressed IDX file is read too
    x = read_idx_images(tmp_path / "x.gz", 28, 28)
    assert x.dtype == np.uint8 and x.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(x[:, 0], images)
    assert x[1, 0, 0, 0] == 784 % 256 and x[2, 0, 27, 27] == (3 * 784 - 1) % 256
    y = read_idx_labels(tmp_path / "y", 10)
    assert y.dtype == np.int64 and y.tolist() == [9, 0, 4]


@pytest.mark.parametrize(
    ("code", "values"),
    [
        (0x09, [-128, -1, 0, 127]),
        (0x0B, [-30000, 258, 1, 0]),
        (0x0C, [-(2**31), 2**31 - 1, 65536, 3]),
        (0x0D, [1.5, -2.25, 0.0, 1e-3]),
        (0x0E, [math.pi, -1e300, 2.0**-40, 0.0]),
    ],
)
def test_idx_reader_decodes_every_big_endian_type(tmp_path: Path, code: int, values: list[float]) -> None:
    array = np.array(values).reshape(2, 2)
    (tmp_path / "a.idx").write_bytes(gzip.compress(idx_bytes(array, code)))
    got = read_idx(tmp_path / "a.idx")
    assert got.shape == (2, 2) and got.dtype.isnative
    expected = array.astype({0x0D: np.float32}.get(code, got.dtype))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "does not start with two zero bytes"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x01\x05", "unknown type byte 0x0a"),
        (b"\x00\x00\x08", "shorter than the 4-byte magic"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "shorter than the header"),
        (idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-5], "holds 1563 bytes after the header"),
        (idx_bytes(np.zeros((2, 28, 28), np.uint8)) + b"\x00", "holds 1569 bytes after the header"),
    ],
)
def test_bad_idx_file_is_an_error_naming_the_file(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(IdxFormatError) as info:
        read_idx(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert "download it again" in str(info.value)


def test_idx_of_the_wrong_shape_or_kind_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 27, 28), np.uint8))))
    with pytest.raises(IdxFormatError, match=r"expected uint8 images of shape \(N, 28, 28\).*\(2, 27, 28\)") as info:
        read_idx_images(path, 28, 28)
    assert str(path) in str(info.value)
    labels = tmp_path / "labels.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.array([1, 10], np.uint8))))
    with pytest.raises(IdxFormatError, match="label 10 is outside 0..9"):
        read_idx_labels(labels, 10)
    broken = tmp_path / "broken.gz"
    noise = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    full = gzip.compress(idx_bytes(noise))
    broken.write_bytes(full[: len(full) // 2])  # a download cut off halfway
    with pytest.raises(IdxFormatError, match="gzip data cannot be decompressed") as info:
        read_idx(broken)
    assert str(broken) in str(info.value)


# --------------------------------------------------------------------------- CIFAR-10 reader


def test_cifar_reader_returns_exactly_the_written_arrays(tmp_path: Path) -> None:
    written = write_cifar_archive(tmp_path / CIFAR_NAME, per_batch=3, n_test=4)
    data = read_cifar10_archive(tmp_path / CIFAR_NAME)
    x, y = data["train"]
    assert x.dtype == np.uint8 and x.shape == (15, 3, 32, 32) and y.dtype == np.int64
    np.testing.assert_array_equal(x, written["train_x"])  # batches 1..5 concatenated in order
    assert y.tolist() == [i % 10 for i in range(15)]
    np.testing.assert_array_equal(data["test"][0], written["test_x"])
    assert data["test"][1].tolist() == [0, 7, 4, 1]
    # the row layout: 1,024 red values, then green, then blue, each row-major
    row = written["train_x"][4].reshape(3072)
    assert x[4, 1, 2, 5] == row[1024 + 2 * 32 + 5] and x[4, 2, 31, 31] == row[3071]


def test_luma_is_bt601_rounded_half_up() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(500, 3), dtype=np.int64)
    pixels[:4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]
    # a pixel whose luma is exactly k + 1/2: 299R + 587G + 114B = 1000k + 500 (R=G=0: 114B ≡ 500 mod 1000)
    half = next(b for b in range(256) if (114 * b) % 1000 == 500)
    pixels[4] = [0, 0, half]
    images = pixels.T.reshape(1, 3, 1, 500).astype(np.uint8).repeat(2, axis=0)
    got = luma(images)
    assert got.shape == (2, 1, 1, 500) and got.dtype == np.uint8
    w = (Fraction(299, 1000), Fraction(587, 1000), Fraction(114, 1000))
    exact = [sum(c * int(v) for c, v in zip(w, p)) for p in pixels]
    expected = [math.floor(e + Fraction(1, 2)) for e in exact]
    assert got[0, 0, 0].tolist() == expected
    assert expected[:4] == [76, 150, 29, 255]
    assert exact[4].denominator == 2 and expected[4] == exact[4] + Fraction(1, 2)  # half rounds up


def test_cifar_archive_errors_name_the_member_and_what_is_wrong(tmp_path: Path) -> None:
    good = cifar_batch(np.zeros((2, 3, 32, 32), np.uint8), [0, 1], b"b")
    members = {f"cifar-10-batches-py/data_batch_{i}": good for i in range(1, 6)}
    cases = [
        (
            {k: v for k, v in members.items() if not k.endswith("_5")},
            "member cifar-10-batches-py/data_batch_5 is missing",
        ),
        (
            {
                **members,
                "cifar-10-batches-py/test_batch": pickle.dumps(
                    {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, protocol=4
                ),
            },
            "b'data' is uint8 of shape (2, 3000), expected uint8 of shape (N, 3072)",
        ),
        (
            {
                **members,
                "cifar-10-batches-py/test_batch": cifar_batch(np.zeros((2, 3, 32, 32), np.uint8), [0, 10], b"t"),
            },
            "labels must lie in 0..9, found 0..10",
        ),
        (
            {
                **members,
                "cifar-10-batches-py/test_batch": pickle.dumps(
                    {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=4
                ),
            },
            "b'labels' has 1 entries but b'data' has 2 rows",
        ),
        # a pickle that would call a function on load is refused, not run
        (
            {**members, "cifar-10-batches-py/test_batch": pickle.dumps(functools.partial(print, "pwned"), protocol=4)},
            "global functools.partial is not allowed",
        ),
    ]
    for index, (content, message) in enumerate(cases):
        path = tmp_path / f"case{index}" / CIFAR_NAME
        path.parent.mkdir()
        write_tar(path, content)
        with pytest.raises(CifarFormatError) as info:
            read_cifar10_archive(path)
        assert str(path) in str(info.value) and message in str(info.value), (index, str(info.value))
    not_tar = tmp_path / "not.tar.gz"
    not_tar.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(CifarFormatError, match="not a readable .tar.gz"):
        read_cifar10_archive(not_tar)


# --------------------------------------------------------------------------- checksum table


def test_checksum_table_holds_the_canonical_sources() -> None:
    table = download.RAW_FILES
    assert set(table) == set(FULL_SIZE_DATASETS)
    assert [f.name for f in table["mnist_full"]] == list(IDX_NAMES) == [f.name for f in table["fashion_mnist"]]
    for files in table.values():
        for entry in files:
            assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0 and entry.size > 0
            assert entry.url.endswith("/" + entry.name)
    assert all(f.url.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for f in table["mnist_full"])
    # Zalando's bucket over https: its REST endpoint (the s3-website endpoint serves only http)
    assert all(f.url.startswith("https://fashion-mnist.s3.eu-central-1.amazonaws.com/") for f in table["fashion_mnist"])
    assert table["cifar10"][0].url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    # 60,000 + 10,000 one-byte labels after an 8-byte header compress to these sizes; images are much larger
    sizes = {f.name: f.size for f in table["mnist_full"]}
    assert sizes["train-images-idx3-ubyte.gz"] == 9912422 and sizes["t10k-labels-idx1-ubyte.gz"] == 4542
    assert table["cifar10"][0].size == 170498071


def test_every_url_in_the_table_is_https() -> None:
    """The downloader takes the URL it is given (the tests serve plain http on 127.0.0.1); the policy lives here."""
    plain = [
        f"{dataset}/{f.name}: {f.url}"
        for dataset, files in download.RAW_FILES.items()
        for f in files
        if urllib.parse.urlsplit(f.url).scheme != "https"
    ]
    assert plain == [], f"download URLs not over https: {plain}"


def test_registry_knows_the_full_size_image_datasets() -> None:
    for name in FULL_SIZE_DATASETS:
        assert name in DATASETS and name in IMAGE_DATASETS


# --------------------------------------------------------------------------- downloads


@pytest.mark.parametrize("dataset", FULL_SIZE_DATASETS)
def test_download_from_file_url_lands_verified_files(sources, dataset: str) -> None:
    paths = download.download_dataset(dataset)
    folder = Path("resources") / dataset
    assert [p.name for p in paths] == [f.name for f in download.RAW_FILES[dataset]]
    for path, entry in zip(paths, download.RAW_FILES[dataset]):
        assert path == folder / entry.name and sha256_of(path) == entry.sha256
        assert path.read_bytes() == Path(entry.url.removeprefix("file://")).read_bytes()
    assert leftovers(folder) == []


@contextlib.contextmanager
def _serving(handler) -> Iterator[str]:
    """Serve ``handler`` on a free port of 127.0.0.1 in a thread; yield the base URL, stop on exit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a handler still writing never blocks the teardown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on 127.0.0.1 serving tmp/served/."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    with _serving(handler) as url:
        yield url, served


def test_download_over_http_lands_and_verifies(sources, http_server, monkeypatch) -> None:
    base, served = http_server
    upstream = Path(download.RAW_FILES["cifar10"][0].url.removeprefix("file://"))
    (served / CIFAR_NAME).write_bytes(upstream.read_bytes())
    entry = download.RAW_FILES["cifar10"][0]
    monkeypatch.setitem(
        download.RAW_FILES, "cifar10", (RawFile(entry.name, f"{base}/{CIFAR_NAME}", entry.sha256, entry.size),)
    )
    seen: list[tuple[int, int]] = []
    path = download_file("cifar10", CIFAR_NAME, progress=lambda done, total: seen.append((done, total)))
    assert sha256_of(path) == entry.sha256 and seen[-1] == (entry.size, entry.size)
    data = read_cifar10_archive(path)
    np.testing.assert_array_equal(data["test"][0], sources["cifar10"]["test_x"])


@dataclass
class Reply:
    """What :func:`scripted_server` answers to every GET: a body (pieces from ``body()``) and an optional
    Content-Length; ``sent`` counts the bytes it got out before the client hung up."""

    body: Callable[[], Iterable[bytes]] = lambda: ()
    length: int | str | None = None
    sent: int = 0


@pytest.fixture()
def scripted_server() -> Iterator[tuple[str, Reply]]:
    """A local HTTP/1.0 server on 127.0.0.1 whose reply the test scripts: without a Content-Length the body
    simply ends when the server closes the connection, as a misbehaving server's would."""
    reply = Reply()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:  # noqa: N802 (the http.server hook's name)
            self.send_response(200)
            if reply.length is not None:
                self.send_header("Content-Length", str(reply.length))
            self.end_headers()
            try:
                for piece in reply.body():
                    self.wfile.write(piece)
                    reply.sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up, as the size cap makes it do

        def log_message(self, *args: object) -> None:
            pass

    with _serving(Handler) as url:
        yield url, reply


def serve_entry(
    monkeypatch: pytest.MonkeyPatch, base: str, dataset: str = "mnist_full", index: int = 0
) -> tuple[RawFile, bytes, list[int]]:
    """Point the table's ``dataset`` file ``index`` at ``base``; return the entry, its official bytes, and a list
    that collects the length of every chunk the downloader reads from the server."""
    entry = download.RAW_FILES[dataset][index]
    good = Path(entry.url.removeprefix("file://")).read_bytes()
    files = list(download.RAW_FILES[dataset])
    files[index] = RawFile(entry.name, f"{base}/{entry.name}", entry.sha256, entry.size)
    monkeypatch.setitem(download.RAW_FILES, dataset, tuple(files))
    reads: list[int] = []
    open_url = download._open_url

    def counting_open(url: str, timeout: float):  # type: ignore[no-untyped-def]
        response = open_url(url, timeout)
        read = response.read

        def counted_read(*args: int) -> bytes:
            chunk = read(*args)
            reads.append(len(chunk))
            return chunk

        response.read = counted_read
        return response

    monkeypatch.setattr(download, "_open_url", counting_open)
    return files[index], good, reads


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_bad_download_is_detected_deleted_and_explained(sources, scripted_server, monkeypatch, damage: str) -> None:
    base, reply = scripted_server
    entry, good, _ = serve_entry(monkeypatch, base)
    bad = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:] if damage == "corrupt" else good[: len(good) // 2]
    reply.body = lambda: [bad]  # no Content-Length: only the sha256 and size check can tell
    with pytest.raises(DownloadError) as info:
        download_file("mnist_full", entry.name)
    message = str(info.value)
    got = hashlib.sha256(bad).hexdigest()
    assert entry.name in message and f"expected sha256 {entry.sha256} ({entry.size} bytes)" in message
    assert f"got sha256 {got} ({len(bad)} bytes)" in message
    assert ("truncated" in message) == (damage == "truncated")
    assert "Retry" in message and "datasets.mnist_full.path" in message and "by hand" in message
    folder = Path("resources/mnist_full")
    assert not (folder / entry.name).exists() and leftovers(folder) == []
    assert list(folder.iterdir()) == []  # nothing landed in resources/


@pytest.mark.parametrize("announced", ["half", "hundredfold", "not a number"])
def test_a_content_length_other_than_the_size_is_refused_before_reading(
    sources, scripted_server, monkeypatch, announced: str
) -> None:
    base, reply = scripted_server
    entry, good, reads = serve_entry(monkeypatch, base)
    reply.length = {"half": entry.size // 2, "hundredfold": 100 * entry.size, "not a number": "lots"}[announced]
    reply.body = lambda: [good] * (100 if announced == "hundredfold" else 1)
    seen: list[int] = []
    with pytest.raises(DownloadError) as info:
        download_file("mnist_full", entry.name, timeout=10, progress=lambda done, total: seen.append(done))
    message = str(info.value)
    assert f"the server at {entry.url} announces {str(reply.length)!r} bytes (Content-Length)" in message
    assert f"{entry.name} of dataset 'mnist_full'" in message and f"official file is {entry.size} bytes" in message
    assert "refused before any of it was read" in message and "Retry the download" in message
    assert "datasets.mnist_full.path" in message
    assert reads == [] and seen == []  # not one byte of the body was read, let alone written
    assert list(Path("resources/mnist_full").iterdir()) == []


@pytest.mark.parametrize("body", ["official file, then more", "endless"])
def test_a_stream_longer_than_the_size_is_cut_off_and_deleted(sources, scripted_server, monkeypatch, body: str) -> None:
    monkeypatch.setattr(download, "CHUNK", 1024)  # many reads for a small test file
    base, reply = scripted_server
    entry, good, reads = serve_entry(monkeypatch, base)
    assert entry.size > 10 * download.CHUNK
    # no Content-Length; the guard: the body is finite (100 times the size), so the test cannot hang
    junk = bytes(range(256)) * 64
    if body == "endless":
        reply.body = lambda: itertools.repeat(junk, 100 * entry.size // len(junk))
    else:
        reply.body = lambda: itertools.chain([good], itertools.repeat(junk, 99 * entry.size // len(junk)))
    seen: list[int] = []
    with pytest.raises(DownloadError) as info:
        download_file("mnist_full", entry.name, timeout=10, progress=lambda done, total: seen.append(done))
    message = str(info.value)
    assert f"the server at {entry.url} sent more than the {entry.size} bytes of {entry.name}" in message
    assert (
        "of dataset 'mnist_full'" in message
        and "stopped at the first byte past that size" in message
        and "deleted" in message
    )
    assert "Retry the download later" in message and "datasets.mnist_full.path" in message
    # bytes written (progress reports each chunk written) never pass the size (tighter than size + one chunk);
    # bytes read pass it by exactly one, the byte that shows the server sent more
    assert 0 < max(seen) <= entry.size
    assert sum(reads) == entry.size + 1 and max(reads) <= download.CHUNK
    folder = Path("resources/mnist_full")
    assert list(folder.iterdir()) == []  # neither the file nor the partial temporary file


def test_a_redirect_from_https_to_http_is_refused() -> None:
    handler = download._HttpsOnlyRedirects()
    with pytest.raises(urllib.error.HTTPError, match="refused the redirect from https to http://127.0.0.1/x"):
        handler.redirect_request(
            urllib.request.Request("https://127.0.0.1/x"), io.BytesIO(), 302, "Found", {}, "http://127.0.0.1/x"
        )
    for old, new in [("https://127.0.0.1/x", "https://127.0.0.1/y"), ("http://127.0.0.1/x", "http://127.0.0.1/y")]:
        followed = handler.redirect_request(urllib.request.Request(old), io.BytesIO(), 302, "Found", {}, new)
        assert followed is not None and followed.full_url == new


def test_failed_download_leaves_nothing_and_says_what_to_do(sources, monkeypatch) -> None:
    entry = download.RAW_FILES["fashion_mnist"][1]
    missing = Path(entry.url.removeprefix("file://")).with_name("gone.gz")
    monkeypatch.setitem(
        download.RAW_FILES,
        "fashion_mnist",
        (
            download.RAW_FILES["fashion_mnist"][0],
            RawFile(entry.name, missing.as_uri(), entry.sha256, entry.size),
            *download.RAW_FILES["fashion_mnist"][2:],
        ),
    )
    with pytest.raises(DownloadError) as info:
        download_file("fashion_mnist", entry.name)
    message = str(info.value)
    assert missing.as_uri() in message and "failed after 0 of" in message and "datasets.fashion_mnist.path" in message
    assert not Path("resources/fashion_mnist", entry.name).exists() and leftovers(Path("resources/fashion_mnist")) == []


def test_a_verified_file_in_place_is_kept_and_a_bad_one_replaced(sources, monkeypatch) -> None:
    path = download_file("cifar10", CIFAR_NAME)
    entry = download.RAW_FILES["cifar10"][0]
    # with the source gone, the verified file is kept (no download)
    monkeypatch.setitem(
        download.RAW_FILES, "cifar10", (RawFile(entry.name, "file:///nonexistent/x", entry.sha256, entry.size),)
    )
    assert download_file("cifar10", CIFAR_NAME) == path
    # a damaged file in place is downloaded again
    monkeypatch.setitem(download.RAW_FILES, "cifar10", (entry,))
    path.write_bytes(b"junk")
    download_file("cifar10", CIFAR_NAME)
    assert sha256_of(path) == entry.sha256


def test_cli_download_data(sources, capsys) -> None:
    assert main(["download-data", "--dataset", "mnist_full", "--file", "t10k-labels-idx1-ubyte.gz"]) == 0
    out = capsys.readouterr().out
    assert "resources/mnist_full/t10k-labels-idx1-ubyte.gz" in out and "sha256 verified" in out
    assert sorted(p.name for p in Path("resources/mnist_full").iterdir()) == ["t10k-labels-idx1-ubyte.gz"]
    assert main(["download-data", "--dataset", "cifar100"]) == 1
    assert "cifar100" in capsys.readouterr().err
    assert main(["download-data", "--dataset", "cifar10", "--file", "nope.tar"]) == 1
    assert "has no raw file 'nope.tar'" in capsys.readouterr().err


# --------------------------------------------------------------------------- building the datasets


def multiset(x: np.ndarray, y: np.ndarray) -> list[tuple[int, bytes]]:
    return sorted((int(label), row.tobytes()) for label, row in zip(y, x.reshape(len(x), -1)))


@pytest.mark.parametrize("dataset", ["mnist_full", "fashion_mnist"])
@pytest.mark.parametrize("route", ["resources", "path"])
def test_idx_dataset_keeps_the_official_split(sources, tmp_path: Path, dataset: str, route: str) -> None:
    written = sources[dataset]
    upstream = Path(download.RAW_FILES[dataset][0].url.removeprefix("file://")).parent
    if route == "resources":
        download.download_dataset(dataset)
        options: dict = {"val_fraction": 0.25}
    else:
        options = {"val_fraction": 0.25, "path": str(upstream)}
    ds = build_dataset(dataset, options, seed=0)
    assert ds.levels == 256 and ds.example_shape == (1, 28, 28) and ds.train.dtype == np.uint8
    assert [len(ds.train), len(ds.val), len(ds.test)] == [30, 10, 10]  # val = ceil(0.25 * 40)
    np.testing.assert_array_equal(ds.test[:, 0], written["test_x"])  # official test set, in order
    assert ds.test_labels.tolist() == written["test_y"].tolist()
    # train + val is the official train set, each image with its label, none twice
    both = multiset(np.concatenate([ds.train, ds.val])[:, 0], np.concatenate([ds.train_labels, ds.val_labels]))
    assert both == multiset(written["train_x"], written["train_y"])
    assert sorted(ds.val_labels.tolist()) == list(range(10))  # stratified: one per class
    assert ds.options == {"val_fraction": 0.25, "path": options.get("path")}
    assert download.RAW_FILES[dataset][0].sha256[:12] in ds.source
    again, other = build_dataset(dataset, options, seed=0), build_dataset(dataset, options, seed=1)
    np.testing.assert_array_equal(again.val, ds.val)
    assert not np.array_equal(other.val, ds.val)


@pytest.mark.parametrize("grey", [False, True])
def test_cifar10_builds_rgb_or_grey_and_round_trips(sources, tmp_path: Path, grey: bool) -> None:
    written = sources["cifar10"]
    download.download_dataset("cifar10")
    ds = build_dataset("cifar10", {"val_fraction": 0.5, "grey": grey}, seed=0)
    channels = 1 if grey else 3
    assert ds.example_shape == (channels, 32, 32) and ds.levels == 256
    assert [len(ds.train), len(ds.val), len(ds.test)] == [10, 10, 6]
    expected_test = luma(written["test_x"]) if grey else written["test_x"]
    np.testing.assert_array_equal(ds.test, expected_test)
    expected_train = luma(written["train_x"]) if grey else written["train_x"]
    assert multiset(np.concatenate([ds.train, ds.val]), np.concatenate([ds.train_labels, ds.val_labels])) == multiset(
        expected_train, written["train_y"]
    )
    assert ("BT.601" in ds.source) == grey
    save_prepared(ds, tmp_path / "cifar10.npz", tmp_path / "cifar10.json")
    back = load_prepared(tmp_path / "cifar10.npz")
    np.testing.assert_array_equal(back.val, ds.val)
    assert back.example_shape == (channels, 32, 32)


def test_wrong_file_under_path_is_an_error_naming_it(sources, tmp_path: Path) -> None:
    upstream = Path(download.RAW_FILES["mnist_full"][0].url.removeprefix("file://")).parent
    local = tmp_path / "my-mnist"
    local.mkdir()
    for name in IDX_NAMES:
        (local / name).write_bytes((upstream / name).read_bytes())
    # the test labels where the training labels should be
    wrong = local / "train-labels-idx1-ubyte.gz"
    wrong.write_bytes((upstream / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(RawFileError) as info:
        build_dataset("mnist_full", {"path": str(local)}, seed=0)
    message = str(info.value)
    assert str(wrong) in message and "is not the official train-labels-idx1-ubyte.gz" in message
    assert f"expected sha256 {download.RAW_FILES['mnist_full'][1].sha256}" in message
    assert f"got sha256 {sha256_of(wrong)}" in message and "datasets.mnist_full.path" in message
    wrong.unlink()
    with pytest.raises(
        RawFileError,
        match=r"train-labels-idx1-ubyte.gz of dataset 'mnist_full' is missing from the "
        r"directory datasets.mnist_full.path",
    ):
        build_dataset("mnist_full", {"path": str(local)}, seed=0)
    with pytest.raises(RawFileError, match="is not a directory"):
        build_dataset("mnist_full", {"path": str(tmp_path / "nowhere")}, seed=0)


def test_no_download_and_no_path_is_a_clear_error(sources) -> None:
    with pytest.raises(RawFileError) as info:
        build_dataset("fashion_mnist", None, seed=0)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz of dataset 'fashion_mnist' is missing from resources/fashion_mnist" in message
    assert "download_data" in message and "download-data --dataset fashion_mnist" in message
    assert "datasets.fashion_mnist.path" in message


def test_bad_options_are_rejected(sources) -> None:
    with pytest.raises(ValueError, match="option grey must be true or false"):
        build_dataset("cifar10", {"grey": "yes"}, seed=0)
    with pytest.raises(ValueError, match="allowed options: path, val_fraction"):
        build_dataset("mnist_full", {"test_fraction": 0.2}, seed=0)
    with pytest.raises(ValueError, match="val_fraction must be a number in"):
        locate = download.download_dataset("mnist_full")
        assert len(locate) == 4
        build_dataset("mnist_full", {"val_fraction": 1.0}, seed=0)


def test_locate_raw_files_verifies_resources(sources) -> None:
    download.download_dataset("cifar10")
    archive = Path("resources/cifar10") / CIFAR_NAME
    assert locate_raw_files("cifar10") == {CIFAR_NAME: archive}
    archive.write_bytes(archive.read_bytes()[:-10])  # truncated in place
    with pytest.raises(RawFileError, match=r"truncated") as info:
        locate_raw_files("cifar10")
    assert str(archive) in str(info.value)


# --------------------------------------------------------------------------- config


def test_schema_accepts_the_full_size_datasets_and_checks_their_options(root: Path) -> None:
    config = load_config(root / "config/smoke.yaml", root / "config/schema.yaml")
    good = copy.deepcopy(config)
    good["datasets"].update(
        mnist_full={"path": "/data/mnist"}, fashion_mnist={}, cifar10={"grey": True, "val_fraction": 0.2}
    )
    for block in good["models"].values():
        block["steps"].update(mnist_full=1, fashion_mnist=1, cifar10=1)
    validate_config(good, root / "config/schema.yaml")
    for dataset, options, names in [
        ("cifar10", {"grey": "yes"}, ["datasets.cifar10.grey", "'yes'"]),
        ("mnist_full", {"size": 14}, ["datasets.mnist_full", "'size'"]),
        ("fashion_mnist", {"path": ""}, ["datasets.fashion_mnist.path"]),
    ]:
        bad = copy.deepcopy(good)
        bad["datasets"][dataset] = options
        with pytest.raises(ConfigError) as info:
            validate_config(bad, root / "config/schema.yaml")
        for name in names:
            assert name in str(info.value), str(info.value)


# --------------------------------------------------------------------------- workflow


def test_workflow_downloads_only_what_has_no_path(root: Path, tmp_path: Path) -> None:
    """Planning a study with mnist_full (downloaded) and cifar10 (``path``): one download job per MNIST
    file, none for CIFAR-10, whose prepare job reads the file under ``path`` instead."""
    import re

    import yaml

    from smoke import copy_project, snakemake

    project = copy_project(root, tmp_path / "project")
    local = tmp_path / "cifar-local"
    local.mkdir()
    (local / CIFAR_NAME).write_bytes(b"stand-in; a dry run reads no file")
    config = yaml.safe_load((root / "config/smoke.yaml").read_text())
    config["datasets"].update(mnist_full={}, cifar10={"path": str(local)})
    for block in config["models"].values():
        block["steps"].update(mnist_full=1, cifar10=1)
    (project / "config/full.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(
        project, "results/data/mnist_full.npz", "results/data/cifar10.npz", "-n", "--configfile", "config/full.yaml"
    ).stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", out.split("Job stats:", 1)[1], re.M))
    assert counts["download_data"] == "4" and counts["prepare_data"] == "2"
    downloads = set(re.findall(r"output: (resources/\S+)", out))
    assert downloads == {f"resources/mnist_full/{name}" for name in IDX_NAMES}
    assert str(local / CIFAR_NAME) in out
