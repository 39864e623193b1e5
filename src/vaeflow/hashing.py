"""What identifies a run: a short hash of its resolved settings, and of the code it runs.

``source_files`` follows a module's imports inside the package by reading the source
(no import is executed), so the workflow can declare exactly the files a job's result
depends on: editing one model's module reruns that model's jobs and nothing else.
Package ``__init__`` files are registries only and are not followed. The training engine
keys its resume file with :func:`training_code_hash` and evaluation records the same digest.

Its own module, free of torch and of :mod:`vaeflow.config`, so that the training engine
depends on these few functions only (an edit elsewhere would look like a change to every run).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

PACKAGE = "vaeflow"
#: the directory that holds the ``vaeflow`` package (``<repo>/src``)
SRC = Path(__file__).resolve().parents[1]


def config_hash(settings: Any) -> str:
    """Short sha256 of the canonical JSON form of ``settings``."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _module_path(src: Path, module: str) -> Path | None:
    parts = module.split(".")
    candidate = src.joinpath(*parts).with_suffix(".py")
    if candidate.is_file():
        return candidate
    package = src.joinpath(*parts, "__init__.py")
    return package if package.is_file() else None


@functools.cache
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


def code_digest(paths: list[str | Path]) -> str:
    """One ``<sha256>  <path>`` line per file, sorted by path (``sha256sum``'s format): the content of
    a workflow code-digest file, which changes exactly when one of the files' contents does."""
    return "".join(f"{hashlib.sha256(Path(p).read_bytes()).hexdigest()}  {p}\n" for p in sorted(map(str, paths)))


def training_code_hash(model: str, src: str | Path = SRC) -> str:
    """Digest of the source files a training run of ``model`` executes: the model's module and
    the training engine, with everything they import from the package (the train rule's code inputs)."""
    return hash_files(source_files(f"{PACKAGE}.models.{model}", src) + source_files(f"{PACKAGE}.training.engine", src))


def main(argv: list[str] | None = None) -> int:
    """``python -m vaeflow.hashing --out DIGEST FILE...``: write the code digest of the files (rule
    code_digest; this module imports neither torch nor numpy, so the job costs a tenth of a second)."""
    import argparse

    from vaeflow.io import write_text_atomic

    parser = argparse.ArgumentParser(prog="python -m vaeflow.hashing", description=main.__doc__)
    parser.add_argument("--out", required=True, help="the digest file to write")
    parser.add_argument("files", nargs="+", help="the source files, as paths relative to the project")
    args = parser.parse_args(argv)
    write_text_atomic(args.out, code_digest(args.files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
