"""Which code and software produced a result.

``source_files`` follows a module's imports inside the package by reading the source
(no import is executed), so the workflow can declare exactly the files a job's result
depends on: editing one model's module reruns that model's jobs and nothing else.
Package ``__init__`` files are registries only and are not followed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE = "vaeflow"
TRACKED_DISTRIBUTIONS = (
    "torch", "numpy", "pandas", "scikit-learn", "scikit-image", "mlxtend",
    "snakemake", "papermill", "altair", "vl-convert-python",
)


def _module_path(src: Path, module: str) -> Path | None:
    parts = module.split(".")
    candidate = src.joinpath(*parts).with_suffix(".py")
    if candidate.is_file():
        return candidate
    package = src.joinpath(*parts, "__init__.py")
    return package if package.is_file() else None


@functools.lru_cache(maxsize=None)
def _imported_modules(path: Path, module: str) -> frozenset[str]:
    """Absolute names of the package modules that ``module`` (at ``path``) imports.

    Cached for the life of the process: the workflow asks for the same modules' sources for
    every job while it builds its DAG, and parsing them each time made a no-op dry-run slow."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package_parts[: len(package_parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(name for name in found if name == PACKAGE or name.startswith(PACKAGE + "."))


def source_files(module: str, src: str | Path) -> list[Path]:
    """The package source files ``module`` depends on (itself included), sorted.

    ``src`` is the directory that holds the ``vaeflow`` package (``<repo>/src``).
    """
    src = Path(src)
    if _module_path(src, module) is None:
        raise ValueError(f"module {module!r} has no source file under {src}; check the module name")
    seen: dict[str, Path] = {}
    stack = [module]
    while stack:
        name = stack.pop()
        path = _module_path(src, name)
        if path is None or name in seen:
            continue
        seen[name] = path
        if path.name == "__init__.py" and name != module:
            continue  # a registry: following it would make every model depend on every other
        stack.extend(_imported_modules(path, name) - set(seen))
    return sorted(p for name, p in seen.items() if p.name != "__init__.py" or name == module)


def hash_files(paths: list[Path]) -> str:
    """sha256 over the contents of ``paths`` (order-independent), first 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def git_version(cwd: str | Path | None = None) -> str:
    """``git describe`` of the checkout (``-dirty`` when it has local changes), else ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=cwd, capture_output=True, text=True, check=True, timeout=10,
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
