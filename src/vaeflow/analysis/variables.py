"""Numbers the prose quotes: each analysis writes its own file; one merged file feeds the site.

Pages quote them as ``{{< var analysis.key >}}``; nothing on the site is typed by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vaeflow.io import write_text_atomic


def write_variables(path: str | Path, analysis: str, values: dict[str, Any]) -> None:
    """Write ``{analysis: values}`` as YAML (keys sorted)."""
    write_text_atomic(path, yaml.safe_dump({analysis: values}, sort_keys=True, allow_unicode=True))


def merge_variables(inputs: list[str | Path], output: str | Path) -> dict[str, Any]:
    """Merge per-analysis variable files; the same top-level name twice is an error."""
    merged: dict[str, Any] = {}
    for path in inputs:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        for name, values in data.items():
            if name in merged:
                raise ValueError(f"variables {name!r} defined twice (again in {path}); give each analysis its own name")
            merged[name] = values
    write_text_atomic(output, yaml.safe_dump(merged, sort_keys=True, allow_unicode=True))
    return merged
