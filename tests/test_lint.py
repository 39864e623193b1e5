"""The code follows the linter and formatter configured in pyproject.toml ([tool.ruff]).

Run as part of the README's test command; ruff comes with the ``test`` extra. To fix what this
reports: ``ruff check --fix src tests benchmarks`` and ``ruff format src tests benchmarks``, then
edit by hand what remains.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("src", "tests", "benchmarks")


def ruff() -> list[str]:
    """The ruff of this environment (``python -m ruff``), else the one on PATH; a missing ruff fails."""
    try:
        import ruff as _  # noqa: F401

        return [sys.executable, "-m", "ruff"]
    except ImportError:
        found = shutil.which("ruff")
        if found:
            return [found]
    pytest.fail('ruff is not installed: install the test extra (pip install -e ".[test]"), which pins it')


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ruff(), *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check_passes():
    proc = run("check", "--no-cache", "--output-format", "concise", *CHECKED)
    assert proc.returncode == 0, (
        f"ruff check found problems (fix: ruff check --fix {' '.join(CHECKED)}):\n{proc.stdout}{proc.stderr}"
    )


def test_ruff_format_check_passes():
    proc = run("format", "--check", "--no-cache", *CHECKED)
    assert proc.returncode == 0, (
        f"files ruff would reformat (fix: ruff format {' '.join(CHECKED)}):\n{proc.stdout}{proc.stderr}"
    )


def test_ruff_finds_a_violation(tmp_path):
    """The checks above can fail: this configuration catches an unused import and bad formatting."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = {  'a':1}\n", encoding="utf-8")
    config = ("--config", str(ROOT / "pyproject.toml"))
    assert "F401" in run("check", "--no-cache", *config, str(bad)).stdout
    assert run("format", "--check", "--no-cache", *config, str(bad)).returncode == 1
