"""Running the workflow on config/smoke.yaml in a temporary copy of the project (shared by tests)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

COPIED = ("Snakefile", "environment.yml", "config", "workflow", "profiles", "src", "report", "benchmarks")
SMOKE = ["--configfile", "config/smoke.yaml"]


def snakemake(project: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
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


def speed_part(model, peak, achieved, ratio):
    """A benchmarks/speed.py result with one row (``ratio`` None: no peer), for tests of its readers."""
    row = {"model": model, "dataset": "toy2d", "data": "toy2d", "ours": {"parameters": 10, "step_time_s": 0.002,
           "samples_per_s": 1000.0, "density_evals_per_s": 2000.0, "achieved_flop_per_s": achieved, "step_flops": 1,
           "fraction_of_peak": achieved / peak}}
    if ratio is not None:
        row["peer"] = {"implementation": "peer", "parameters": 11, "step_time_s": 0.002 / ratio, "samples_per_s": 500.0,
                       "density_evals_per_s": 4000.0, "step_time_same_optimizer_s": 0.002 / ratio}
        row.update(step_time_ratio=ratio, step_time_ratio_same_optimizer=ratio, sample_time_ratio=0.5, density_time_ratio=2.0)
    else:
        row["peer"] = None
    return {"settings": {"reps": 1, "min_time": 0.1, "examples": 50, "threads": 1, "torch": "x", "only": [model]},
            "matmul_peak_flop_per_s": peak, "results": [row], "skipped": []}
