"""run_notebook: the workflow's interpreter, kept notebooks of failed runs, messages that help."""

import json
import stat
import sys
from pathlib import Path

import nbformat
import pytest

from vaeflow.analysis.notebooks import run_notebook


def _notebook(path: Path, *sources: str) -> Path:
    """A notebook with a ``parameters`` cell (``out = ''``) followed by ``sources``."""
    params = nbformat.v4.new_code_cell("out = ''")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, *map(nbformat.v4.new_code_cell, sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def impostor_kernel(tmp_path, monkeypatch):
    """A ``python3`` kernelspec first on Jupyter's search path, as a user's own install would be.

    Its argv runs a wrapper that leaves a marker and then execs a real ipykernel, so a
    notebook run through it still succeeds: only the marker tells that it was used.
    """
    marker = tmp_path / "impostor-was-used"
    wrapper = tmp_path / "impostor.sh"
    wrapper.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec "{sys.executable}" -m ipykernel_launcher "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    for where in ("jupyter_path", "home/.local/share/jupyter", "data"):
        spec = tmp_path / where / "kernels" / "python3"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(
            json.dumps(
                {"argv": [str(wrapper), "-f", "{connection_file}"], "display_name": "impostor", "language": "python"}
            )
        )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter_path"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    return marker


def test_kernel_runs_on_the_workflows_interpreter_whatever_kernelspecs_exist(tmp_path, impostor_kernel):
    source = _notebook(tmp_path / "which.ipynb", "import sys\nopen(out, 'w').write(sys.executable)")
    written = tmp_path / "executable.txt"
    run_notebook(source, tmp_path / "out" / "which.ipynb", {"out": str(written)}, failed_dir=tmp_path / "failed")
    assert written.read_text() == sys.executable
    assert not impostor_kernel.exists()
    recorded = nbformat.read(tmp_path / "out" / "which.ipynb", as_version=4).metadata["vaeflow"]["interpreter"]
    assert recorded == {"executable": sys.executable, "python_version": ".".join(map(str, sys.version_info[:3]))}


def test_a_kernel_reporting_another_interpreter_is_refused(tmp_path, monkeypatch):
    from vaeflow.analysis import notebooks

    class Elsewhere(notebooks.WorkflowKernelManager):
        """A kernel that claims another interpreter (as one started from another spec would)."""

        @property
        def kernel_spec(self):
            spec = super().kernel_spec
            spec.argv = [
                sys.executable,
                "-c",
                "import sys; sys.executable = '/elsewhere/python'; "
                "from ipykernel.kernelapp import launch_new_instance; launch_new_instance()",
                "-f",
                "{connection_file}",
            ]
            return spec

    monkeypatch.setattr(notebooks, "WorkflowKernelManager", Elsewhere)
    output = tmp_path / "out" / "which.ipynb"
    with pytest.raises(
        RuntimeError, match=f"runs on /elsewhere/python, not on the workflow's interpreter {sys.executable}"
    ):
        run_notebook(_notebook(tmp_path / "which.ipynb", "1"), output, {}, failed_dir=tmp_path / "failed")
    assert not output.exists() and not list(output.parent.glob(".*running*"))


def test_killed_kernel_names_the_cell_and_keeps_this_runs_notebook(tmp_path):
    source = _notebook(
        tmp_path / "oom.ipynb", "print('reached cell two')", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    )
    output = tmp_path / "out" / "oom.ipynb"
    stale = tmp_path / "failed" / "oom.ipynb"
    stale.parent.mkdir()
    stale.write_text("an older failure")
    with pytest.raises(RuntimeError) as info:
        run_notebook(source, output, {"out": "x"}, failed_dir=tmp_path / "failed")
    message = str(info.value)
    print(message)
    assert str(source) in message
    assert "kernel process died" in message and "out-of-memory" in message
    # index 3: the injected parameters cell follows the parameters cell
    assert "cell at index 3" in message and "`import os, signal`" in message
    assert "rerun the rule" in message and str(stale) in message
    kept = nbformat.read(stale, as_version=4)
    outputs = ["".join(o.get("text", "")) for c in kept.cells for o in c.get("outputs", [])]
    assert "reached cell two\n" in outputs  # this run's output, not the stale file's
    assert kept.cells[3].metadata.papermill.status == "failed" and "kernel process died" in outputs[-1]
    assert not output.exists()
    assert not list(output.parent.glob(".*running*"))


def test_failing_cell_names_the_error_and_a_later_success_clears_the_kept_copy(tmp_path):
    source = _notebook(tmp_path / "fail.ipynb", "if not out:\n    raise ValueError('no out given')")
    output, kept = tmp_path / "out" / "fail.ipynb", tmp_path / "failed" / "fail.ipynb"
    with pytest.raises(RuntimeError) as info:
        run_notebook(source, output, {}, failed_dir=tmp_path / "failed")
    print(info.value)
    assert f"notebook {source} failed in cell" in str(info.value)
    assert "ValueError: no out given" in str(info.value) and str(kept) in str(info.value)
    assert "no out given" in kept.read_text()
    assert not output.exists() and not list(output.parent.glob(".*running*"))

    run_notebook(source, output, {"out": "given"}, failed_dir=tmp_path / "failed")
    assert output.exists() and not kept.exists()
    assert not list(output.parent.glob(".*running*"))
