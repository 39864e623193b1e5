"""Execute an analysis notebook with papermill; keep the executed copy when a cell fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def run_notebook(source: str | Path, output: str | Path, parameters: dict[str, Any], failed_dir: str | Path) -> None:
    """Run ``source`` with ``parameters`` and write the executed notebook to ``output``.

    The notebook runs with the current directory as its working directory. The output
    appears only when every cell succeeded; on a failing cell the partially executed
    notebook is kept in ``failed_dir`` for debugging and a RuntimeError names the
    notebook, the cell and the error.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    running = output.with_name(f".{output.stem}.running.ipynb")
    try:
        papermill.execute_notebook(
            str(source), str(running), parameters=parameters, kernel_name="python3",
            progress_bar=False, cwd=str(Path.cwd()),
        )
    except PapermillExecutionError as exc:
        kept = Path(failed_dir) / output.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        if running.exists():
            shutil.move(running, kept)
        raise RuntimeError(
            f"notebook {source} failed in cell {exc.exec_count} with {exc.ename}: {exc.evalue}. "
            f"The executed notebook, with the traceback in that cell, is kept at {kept}."
        ) from None
    except BaseException:
        running.unlink(missing_ok=True)
        raise
    os.replace(running, output)
