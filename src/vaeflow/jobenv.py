"""The environment the workflow's jobs run in."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def use_checkout(src: str | Path) -> None:
    """Make jobs import the package from ``src`` and run the interpreter that runs Snakemake.

    ``src`` goes first on ``PYTHONPATH``, so a job runs the very source files its rule
    declares as inputs (also in a copy of the project); the directory of
    ``sys.executable`` goes first on ``PATH``, so ``python`` in a rule is the same
    interpreter even when the virtual environment is not activated. A conda
    environment activated for a rule (``--sdm conda``) still comes first on its own ``PATH``.
    """
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
