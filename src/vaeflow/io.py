"""Atomic file writes: a crash or a bad input never leaves a half-written file behind."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    A failed write (a full disk, a folder without write permission) raises :class:`WriteError`,
    which names the file and what to do, and leaves neither the temporary file nor a changed
    ``path`` behind.
    """
    target = Path(path)
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes owner-only files
        os.replace(tmp_path, target)
    except OSError as exc:
        raise WriteError(target, exc) from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


class WriteError(OSError):
    """A results file could not be written; the message says which, why, and what to do."""

    def __init__(self, target: Path, cause: OSError) -> None:
        if cause.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = f"free space on the file system that holds {target.parent} (df -h {target.parent}) and rerun"
        elif cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = f"make {target.parent} writable for this user (or run from a checkout you can write to) and rerun"
        else:
            hint = "fix the cause and rerun"
        reason = cause.strerror or str(cause)
        super().__init__(
            cause.errno,
            f"cannot write {target}: {reason} ({errno.errorcode.get(cause.errno or 0, 'error')}); "
            f"nothing was written there. To fix: {hint}",
        )
        self.filename = str(target)

    def __str__(self) -> str:
        return self.strerror


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON (sorted keys, NaN refused: no NaN ever reaches a results file)."""
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def unwritable_folders(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """The folders among ``paths``' parents that this process cannot create files in (sorted).

    For a path whose folder does not exist yet, the nearest existing ancestor is checked, since
    that is where the folder will be made. ``os.access`` answers for this user, read-only mounts
    included, so root's view is respected too.
    """
    checked: dict[Path, bool] = {}
    bad: set[Path] = set()
    for path in paths:
        folder = Path(path).absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if folder not in checked:
            checked[folder] = os.access(folder, os.W_OK | os.X_OK)
        if not checked[folder]:
            bad.add(folder)
    return sorted(bad)
