"""Which code and software produced a result.

The code itself is identified by :mod:`vaeflow.hashing` (``source_files``, ``hash_files``,
re-exported here); this module adds the code version and the package versions.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from vaeflow.hashing import PACKAGE, hash_files, source_files

__all__ = ["git_version", "hash_files", "package_versions", "source_files"]

TRACKED_DISTRIBUTIONS = (
    "torch",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-image",
    "mlxtend",
    "snakemake",
    "papermill",
    "altair",
    "vl-convert-python",
)


def git_version(cwd: str | Path | None = None) -> str:
    """``git describe`` of the checkout (``-dirty`` when it has local changes), else ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of Python and of the libraries the results depend on."""
    versions = {"python": platform.python_version(), PACKAGE: _version(PACKAGE)}
    versions.update({name: _version(name) for name in TRACKED_DISTRIBUTIONS})
    return versions


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
