import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/smoke.py, tests/brute_force.py
# tests/adding/ is the worked example of docs/adding.md, tested in a copy of the project where its
# model is registered (tests/test_workflow.py); here the model does not exist
collect_ignore = ["adding"]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors on a shared 2-core CPU: one thread is faster and does not fight other jobs."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def smoke_study(root, tmp_path_factory):
    """A finished smoke study (config/smoke.yaml) in a copy of the project, shared by the
    workflow and analysis tests; tests that edit it run after the ones that only read it."""
    from smoke import SMOKE, copy_project, snakemake
    from vaeflow.site.quarto import quarto_available

    project = copy_project(root, tmp_path_factory.mktemp("study") / "project")
    # the README's main command: the study, then Snakemake's report
    proc = snakemake(project, "--cores", "2", "--report", "results/report.html", "--report-after-run", *SMOKE)
    assert "workflow finished in" in proc.stdout + proc.stderr
    if not quarto_available():
        assert "SITE NOT RENDERED" in proc.stderr
    return project
