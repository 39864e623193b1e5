"""How long the study's pipeline takes: cold, planned with nothing to do, and rebuilt after one edit.

In a fresh clone of this checkout's HEAD (so nothing is cached and nothing of this working
tree leaks in), with this interpreter's Snakemake:

1. **cold**: the README's main command (``snakemake --cores N --report … --report-after-run``)
   from nothing: data, every training, evaluation, probe and analysis, the site's sources;
2. **no-op dry run**: ``snakemake -n --quiet`` on the finished study, ``--reps`` times (median);
3. **rebuilds**: edit one file (a model's source, an analysis notebook, a site page: a newline
   appended, valid in all three), list the jobs Snakemake plans (a dry run) and time the
   rebuild. The planned jobs are recorded so a reader can check that editing one model's source
   reruns only that model's subgraph. (A bare ``touch`` reruns nothing: Snakemake compares the
   checksum it recorded for an input whose mtime changed.)

Writes ``OUT/pipeline.json`` and ``OUT/pipeline.md``; a step's result is written as soon as
it is measured, so a long run keeps what it has. Run it on a quiet machine: every job
competes for the same cores.

    python benchmarks/pipeline.py                          # default study, 2 cores (~30 min)
    python benchmarks/pipeline.py --configfile config/smoke.yaml --edit-model vae
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vaeflow.io import write_json_atomic, write_text_atomic  # noqa: E402


def _own_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used itself, its children not counted (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def snakemake(clone: Path, args: list[str], configfile: str | None) -> tuple[float, str, float | None]:
    """Run Snakemake in ``clone`` (targets and flags in ``args``): wall seconds, output, and the CPU
    seconds of the Snakemake process itself (the master: planning and scheduling, not its jobs),
    sampled every 0.2 s from /proc (None where there is no /proc)."""
    command = [sys.executable, "-m", "snakemake", *args] + (["--configfile", configfile] if configfile else [])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(command, cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        master = None
        while proc.poll() is None:
            master = _own_cpu_s(proc.pid) or master
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        log.seek(0)
        output = log.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {clone} (exit {proc.returncode}):\n{output[-4000:]}")
    return seconds, output, master


#: the study's stages, by rule name (the first pattern that matches)
STAGES = [
    ("code digests", r"code_digest"),
    ("data", r"prepare_data|baselines"),
    ("train", r"train"),
    ("evaluate", r"evaluate"),
    ("probes", r"probe_\w+"),
    ("speed benchmark", r"speed_\w+"),
    ("analyses", r"\w+_analysis"),
    ("site", r".*"),
]


def stage_times(clone: Path) -> dict[str, dict[str, float]]:
    """Jobs and summed job seconds per stage, from Snakemake's record of every job (.snakemake/metadata)."""
    import json

    jobs: dict[tuple, tuple[str, float]] = {}
    for path in (clone / ".snakemake" / "metadata").iterdir():
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("starttime") is not None and meta.get("endtime") is not None:
            jobs[(meta["rule"], meta.get("job_hash"))] = (meta["rule"], meta["endtime"] - meta["starttime"])
    stages: dict[str, dict[str, float]] = {name: {"jobs": 0, "job_s": 0.0} for name, _ in STAGES}
    for rule, seconds in jobs.values():
        name = next(name for name, pattern in STAGES if re.fullmatch(pattern, rule))
        stages[name]["jobs"] += 1
        stages[name]["job_s"] = round(stages[name]["job_s"] + seconds, 1)
    return {name: value for name, value in stages.items() if value["jobs"]}


def planned_jobs(output: str) -> dict[str, int]:
    """Job counts by rule from a dry run's "Job stats" table (empty when nothing is to be done)."""
    counts: dict[str, int] = {}
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def planned_runs(output: str) -> list[str]:
    """The ``dataset/model`` of every train, evaluate and probe job a dry run plans."""
    runs = Counter(re.findall(r"wildcards: dataset=(\w+), model=(\w+), seed=\d+", output))
    return sorted(f"{dataset}/{model}" for dataset, model in runs)


def rebuild(clone: Path, edited: str, cores: int, configfile: str | None) -> dict:
    with open(clone / edited, "a", encoding="utf-8") as handle:
        handle.write("\n")
    _, plan, _ = snakemake(clone, ["-n", "--cores", str(cores)], configfile)
    seconds, _, _ = snakemake(clone, ["--cores", str(cores)], configfile)
    return {
        "edited": edited,
        "planned_jobs": planned_jobs(plan),
        "planned_runs": planned_runs(plan),
        "wall_s": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", default=None, help="a config other than the default study")
    parser.add_argument("--reps", type=int, default=5, help="no-op dry runs (median reported)")
    parser.add_argument("--edit-model", default="maf", help="the model whose source file is edited")
    parser.add_argument("--edit-notebook", default="cost")
    parser.add_argument("--edit-page", default="cost")
    parser.add_argument("--workdir", default=None, help="where to clone (default: a new temporary directory, kept)")
    parser.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    args = parser.parse_args(argv)

    clone = Path(args.workdir or tempfile.mkdtemp(prefix="vaeflow-pipeline-")) / "main"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout.strip()
    result: dict = {
        "commit": commit,
        "cores": args.cores,
        "configfile": args.configfile or "config/config.yaml",
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
        "clone": str(clone),
    }
    out = Path(args.out)

    def save() -> None:
        write_json_atomic(out / "pipeline.json", result)
        write_text_atomic(out / "pipeline.md", summary(result))

    print(f"cold study in {clone} ...", flush=True)
    seconds, log, master = snakemake(
        clone, ["--cores", str(args.cores), "--report", "results/report.html", "--report-after-run"], args.configfile
    )
    jobs = re.search(r"(\d+) of (\d+) steps \(100%\) done", log)
    result["cold"] = {
        "wall_s": round(seconds, 1),
        "jobs": int(jobs.group(2)) if jobs else None,
        "master_cpu_s": None if master is None else round(master, 1),
        "master_cpu_share": None if master is None else round(master / seconds, 4),
        "stages": stage_times(clone),
    }
    save()
    print(f"cold: {seconds:.0f} s", flush=True)

    times = []
    for _ in range(args.reps):
        seconds, log, _ = snakemake(clone, ["-n", "--quiet"], args.configfile)
        if "Nothing to be done" not in log:
            raise RuntimeError(f"the finished study still plans jobs:\n{log[-3000:]}")
        times.append(seconds)
    result["noop_dry_run"] = {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times]}
    save()
    print(f"no-op dry run: {statistics.median(times):.2f} s", flush=True)

    result["rebuilds"] = []
    for edited in (
        f"src/vaeflow/models/{args.edit_model}.py",
        f"workflow/notebooks/{args.edit_notebook}.ipynb",
        f"report/{args.edit_page}.qmd",
    ):
        result["rebuilds"].append(rebuild(clone, edited, args.cores, args.configfile))
        save()
        print(f"edited {edited}: {result['rebuilds'][-1]['wall_s']:.0f} s", flush=True)
    print(f"wrote {out / 'pipeline.json'} and {out / 'pipeline.md'}")
    return 0


def summary(result: dict) -> str:
    lines = [
        f"Pipeline wall times at commit {result['commit']}, `--cores {result['cores']}`, "
        f"{result['configfile']}, on {result['machine']['cpu_count']} CPUs.",
        "",
        "| step | wall time | jobs |",
        "|---|---|---|",
    ]
    if "cold" in result:
        lines.append(
            f"| cold study (README main command) | {result['cold']['wall_s'] / 60:.1f} min | {result['cold']['jobs']} |"
        )
        share = result["cold"].get("master_cpu_share")
        if share is not None:
            lines.append(
                f"| Snakemake's own CPU time in the cold study (the master, not its jobs) | "
                f"{result['cold']['master_cpu_s']:.0f} s, {100 * share:.1f}% of the wall time | – |"
            )
    if "noop_dry_run" in result:
        lines.append(
            f"| no-op `snakemake -n` (median of {len(result['noop_dry_run']['runs_s'])}) | "
            f"{result['noop_dry_run']['median_s']:.2f} s | 0 |"
        )
    for step in result.get("rebuilds", []):
        jobs = ", ".join(f"{rule} {n}" for rule, n in step["planned_jobs"].items() if rule != "all")
        runs = f"; runs: {', '.join(step['planned_runs'])}" if step["planned_runs"] else ""
        lines.append(f"| rebuild after editing `{step['edited']}` | {step['wall_s']:.0f} s | {jobs}{runs} |")
    stages = result.get("cold", {}).get("stages")
    if stages:
        lines += [
            "",
            "Job time per stage of the cold study (summed over its jobs; two run at once on two cores):",
            "",
            "| stage | jobs | job time |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {v['jobs']} | {v['job_s'] / 60:.1f} min |" for name, v in stages.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
