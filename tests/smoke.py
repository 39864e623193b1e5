"""Running the workflow on config/smoke.yaml in a temporary copy of the project (shared by tests)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COPIED = ("Snakefile", "environment.yml", "config", "workflow", "profiles", "src", "report", "benchmarks")
SMOKE = ["--configfile", "config/smoke.yaml"]


#: a Snakemake run that has printed nothing for this long is hung, not slow: every job it starts or
#: finishes prints a line, and no job of the smoke study takes minutes even on a loaded machine
SILENCE_LIMIT_S = 30 * 60


def run_guarded(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, silence_limit_s: float = SILENCE_LIMIT_S
) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` with a hang guard instead of a time limit.

    A slow or shared machine makes a run take longer but never silent: the guard fires only when
    the process has written nothing to stdout or stderr for ``silence_limit_s`` seconds, kills it,
    and fails saying that it caught a hang, not a slow run, with the end of what it printed.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with out_path.open("w") as out, err_path.open("w") as err:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
            last_size, last_change = -1, time.monotonic()
            while proc.poll() is None:
                time.sleep(1.0)
                size = out_path.stat().st_size + err_path.stat().st_size
                if size != last_size:
                    last_size, last_change = size, time.monotonic()
                elif time.monotonic() - last_change > silence_limit_s:
                    proc.kill()
                    proc.wait()
                    tail = err_path.read_text(errors="replace")[-3000:]
                    raise AssertionError(
                        f"hang guard: {' '.join(cmd)} printed nothing for {silence_limit_s:.0f} s and was "
                        f"killed. This guard catches a hang, not a slow machine (it never limits the total "
                        f"time). The end of its stderr:\n{tail}"
                    )
        return subprocess.CompletedProcess(
            cmd, proc.returncode, out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
        )


def snakemake(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("PYTHONPATH", None)
    proc = run_guarded([sys.executable, "-m", "snakemake", *args], project, env)
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
    row = {
        "model": model,
        "dataset": "toy2d",
        "data": "toy2d",
        "ours": {
            "parameters": 10,
            "step_time_s": 0.002,
            "samples_per_s": 1000.0,
            "density_evals_per_s": 2000.0,
            "achieved_flop_per_s": achieved,
            "step_flops": 1,
            "fraction_of_peak": achieved / peak,
        },
    }
    if ratio is not None:
        row["peer"] = {
            "implementation": "peer",
            "parameters": 11,
            "step_time_s": 0.002 / ratio,
            "samples_per_s": 500.0,
            "density_evals_per_s": 4000.0,
            "step_time_same_optimizer_s": 0.002 / ratio,
        }
        row.update(
            step_time_ratio=ratio, step_time_ratio_same_optimizer=ratio, sample_time_ratio=0.5, density_time_ratio=2.0
        )
    else:
        row["peer"] = None
    return {
        "settings": {"reps": 1, "min_time": 0.1, "examples": 50, "threads": 1, "torch": "x", "only": [model]},
        "matmul_peak_flop_per_s": peak,
        "results": [row],
        "skipped": [],
    }
