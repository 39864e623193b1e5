"""Execute an analysis notebook with papermill on the workflow's own interpreter.

The executed copy appears only when every cell succeeded. When a cell fails or the kernel
dies, the partially executed notebook of *this* run is kept in ``failed_dir`` for debugging.
"""

from __future__ import annotations

import ast
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec


class WorkflowKernelManager(AsyncKernelManager):
    """Starts the notebook kernel on ``sys.executable`` of this process, whatever kernelspecs exist.

    papermill looks the kernel up by name (``python3``), and a kernelspec of that name earlier
    on JUPYTER_PATH or in ~/.local/share/jupyter would win: the analyses would then run, rc 0,
    under another Python with other packages. This manager ignores kernelspecs and, once the
    kernel is up, asks it for its ``sys.executable`` so that a mismatch is an error, not a guess.
    """

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python {platform.python_version()} (vaeflow)",
            language="python",
        )

    async def start_kernel(self, **kw: Any) -> None:
        await super().start_kernel(**kw)
        reported = await self._kernel_executable()
        if reported != sys.executable:
            await self.shutdown_kernel(now=True)
            raise RuntimeError(
                f"the notebook kernel runs on {reported}, not on the workflow's interpreter "
                f"{sys.executable}. Check ipykernel is installed in {sys.prefix}."
            )

    async def _kernel_executable(self) -> str:
        """The kernel's own ``sys.executable``, read through a silent user expression."""
        kc = self.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            msg_id = kc.execute(
                "", silent=True, store_history=False, user_expressions={"exe": "__import__('sys').executable"}
            )
            while (reply := await kc.get_shell_msg(timeout=60))["parent_header"].get("msg_id") != msg_id:
                pass
            return ast.literal_eval(reply["content"]["user_expressions"]["exe"]["data"]["text/plain"])
        finally:
            kc.stop_channels()


def run_notebook(source: str | Path, output: str | Path, parameters: dict[str, Any], failed_dir: str | Path) -> None:
    """Run ``source`` with ``parameters`` and write the executed notebook to ``output``.

    The notebook runs with the current directory as its working directory, on this process's
    interpreter, which is recorded in ``metadata["vaeflow"]["interpreter"]`` of the output. On a
    failing cell or a dead kernel the partially executed notebook is kept in ``failed_dir`` and a
    RuntimeError names the notebook, the cell and the cause. A copy kept by an earlier failure is
    removed first, so whatever lies in ``failed_dir`` belongs to the latest run.
    """
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    running = output.with_name(f".{output.stem}.running.ipynb")
    kept = Path(failed_dir) / output.name
    kept.unlink(missing_ok=True)
    try:
        nb = papermill.execute_notebook(
            str(source),
            str(running),
            parameters=parameters,
            kernel_name="python3",
            progress_bar=False,
            cwd=str(Path.cwd()),
            kernel_manager_class=WorkflowKernelManager,
        )
        nb.metadata["vaeflow"] = {
            "interpreter": {
                "executable": sys.executable,  # checked against the kernel's own report by WorkflowKernelManager
                "python_version": nb.metadata["language_info"]["version"],  # from the kernel's kernel_info reply
            }
        }
        nbformat.write(nb, running)
    except PapermillExecutionError as exc:
        _keep(running, kept)
        raise RuntimeError(
            f"notebook {source} failed in cell {exc.exec_count} with {exc.ename}: {exc.evalue}. "
            f"The executed notebook, with the traceback in that cell, is kept at {kept}."
        ) from None
    except DeadKernelError:
        _keep(running, kept)
        raise RuntimeError(
            f"notebook {source}: the kernel process died {_mark_dead_cell(kept)}; it was killed "
            f"(often by the out-of-memory killer) or crashed, so there is no Python traceback. "
            f"The partially executed notebook is kept at {kept}. Check the memory the rule may use "
            f"(and `dmesg` for an OOM kill), then rerun the rule."
        ) from None
    except BaseException:
        running.unlink(missing_ok=True)
        raise
    os.replace(running, output)


def _keep(running: Path, kept: Path) -> None:
    """Move this run's partially executed notebook to where a failed run's copy is kept."""
    kept.parent.mkdir(parents=True, exist_ok=True)
    if running.exists():
        shutil.move(running, kept)


def _mark_dead_cell(notebook: Path) -> str:
    """Mark in the kept notebook the cell the kernel died in (papermill shows it as completed)
    and say where that was: the last cell papermill started."""
    if not notebook.exists():
        return "before the notebook was written"
    nb = nbformat.read(notebook, as_version=4)
    started = [(i, c) for i, c in enumerate(nb.cells) if c.metadata.get("papermill", {}).get("start_time")]
    if not started:
        return "before any cell ran"
    index, cell = started[-1]
    cell.metadata.papermill.update(status="failed", exception=True)
    nb.metadata.papermill["exception"] = True
    cell.outputs.append(
        nbformat.v4.new_output(
            "stream", name="stderr", text="vaeflow: the kernel process died while running this cell\n"
        )
    )
    nbformat.write(nb, notebook)
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    return f"while running the cell at index {index} of the kept notebook (counting from 0), which begins `{first}`"
