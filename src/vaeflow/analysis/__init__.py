"""The analyses of the study: one module per question, run by its papermill notebook.

Each module declares the tables and figures it writes as module-level tuples ``TABLES`` and
``FIGURES`` (file stems). :func:`declared_outputs` reads them from the source without
importing the module, so the workflow can plan its jobs without loading the analyses'
libraries (pandas, scikit-learn, scipy).
"""

from __future__ import annotations

import ast
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def declared_outputs(analysis: str) -> dict[str, tuple[str, ...]]:
    """``{"TABLES": (...), "FIGURES": (...)}`` of ``vaeflow.analysis.<analysis>``, from its source."""
    path = _HERE / f"{analysis}.py"
    if not path.is_file():
        raise ValueError(f"no analysis module {path}; the analyses are the modules of {_HERE}")
    found: dict[str, tuple[str, ...]] = {}
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("TABLES", "FIGURES"):
                found[name] = tuple(ast.literal_eval(node.value))
    missing = {"TABLES", "FIGURES"} - set(found)
    if missing:
        raise ValueError(f"{path} must declare {' and '.join(sorted(missing))} as literal tuples of file stems")
    return found
