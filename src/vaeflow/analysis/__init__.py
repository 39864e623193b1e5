"""The analyses of the study: one module per question, run by its papermill notebook.

Each module declares the tables and figures it writes, with their captions, as module-level dicts
``TABLES`` and ``FIGURES``: a file stem maps to ``{"title": ..., "caption": ...}`` (see
:mod:`vaeflow.analysis.captions`, which makes the site's and the report's captions from them).
:func:`declared_outputs` reads them from the source without importing the module, so the workflow
can plan its jobs without loading the analyses' libraries (pandas, scikit-learn, scipy).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

ANALYSIS_DIR = Path(__file__).resolve().parent


def declared_outputs(analysis: str, captions: bool = False) -> dict[str, Any]:
    """``{"TABLES": (stem, ...), "FIGURES": (stem, ...)}`` of ``vaeflow.analysis.<analysis>``, from its
    source; with ``captions``, the declarations themselves (``{stem: {"title": ..., "caption": ...}}``)."""
    path = ANALYSIS_DIR / f"{analysis}.py"
    if not path.is_file():
        raise ValueError(f"no analysis module {path}; the analyses are the modules of {ANALYSIS_DIR}")
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("TABLES", "FIGURES"):
                found[name] = ast.literal_eval(node.value)
    missing = {"TABLES", "FIGURES"} - set(found)
    bad = [name for name, value in found.items() if not isinstance(value, dict)]
    if missing or bad:
        raise ValueError(
            f"{path} must declare TABLES and FIGURES as literal dicts from file stem to "
            "{'title': ..., 'caption': ...}"
        )
    return found if captions else {name: tuple(value) for name, value in found.items()}
