"""Running the workflow on config/smoke.yaml in a temporary copy of the project (shared by tests)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

COPIED = ("Snakefile", "environment.yml", "config", "workflow", "profiles", "src", "report")
SMOKE = ["--configfile", "config/smoke.yaml"]


def snakemake(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=project, env=env, capture_output=True, text=True, timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def copy_project(root: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in COPIED:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, dest / name)
    return dest


