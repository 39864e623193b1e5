"""The Environment page: software, hardware, seeds and wall times of this build.

The items of the ML reproducibility checklist (Pineau et al. 2021) that a reader needs to
rerun the study: the exact versions each run recorded in its ``metrics.json``, the machine,
the seeds, every run's training and evaluation wall time, and the time each probe and
analysis job took (from Snakemake's job records).
"""

from __future__ import annotations

import os
import platform
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from vaeflow.io import read_json, write_text_atomic
from vaeflow.site.reproduce import distinct_jobs, run_seconds


def hardware() -> dict[str, str]:
    """The machine this page was generated on: CPU, cores, memory, GPU."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(encoding="utf-8", errors="replace"), re.M)
        cpu = found.group(1).strip() if found else cpu
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(encoding="utf-8"), re.M)
        memory = f"{int(found.group(1)) / 2**20:.1f} GiB" if found else memory
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    try:
        import torch

        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"
    except Exception as error:  # noqa: BLE001 - the page reports what it could not read
        gpu = f"unknown ({error})"
    return {
        "CPU": cpu,
        "cores available": str(cores),
        "memory": memory,
        "GPU": gpu,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
    }


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _job_seconds(paths: list[str], metadata_dir: Path) -> dict[str, list[float]]:
    """Run time of the job behind each path (one per job), grouped by rule."""
    times: dict[str, list[float]] = defaultdict(list)
    for meta, _ in distinct_jobs(paths, metadata_dir):
        seconds = run_seconds(meta)
        if seconds is not None:
            times[meta["rule"]].append(seconds)
    return times


def markdown(
    metrics: list[str],
    summaries: list[str],
    jobs: list[str],
    metadata_dir: Path,
    configfiles: list[str],
    seeds: list[int],
    data_seed: int,
) -> str:
    runs = [read_json(p) for p in metrics]
    trained = {Path(p).parent: read_json(p) for p in summaries}
    versions: dict[str, Counter] = defaultdict(Counter)
    for run in runs:
        for name, version in run.get("versions", {}).items():
            versions[name][version] += 1
    lines = [
        "## Software",
        "",
        "The versions every run recorded when it was evaluated (`metrics.json`); a package listed with",
        "two versions means runs were made under both.",
        "",
    ]
    lines += _table(
        ["package", "version (runs)"],
        [[f"`{name}`", ", ".join(f"{v} ({n})" for v, n in sorted(c.items()))] for name, c in sorted(versions.items())],
    )
    code = Counter(run.get("code_version", "unknown") for run in runs)
    lines += [
        "",
        "Code versions of the runs (`git describe` when each was evaluated): "
        + ", ".join(f"`{v}` ({n} runs)" for v, n in sorted(code.items()))
        + ".",
        "",
    ]

    lines += [
        "## Hardware",
        "",
        "The machine that generated these pages (the runs' own devices and threads follow).",
        "",
    ]
    lines += _table(["", ""], [[k, v] for k, v in hardware().items()])
    devices = Counter(run.get("device", "unknown") for run in runs)
    threads = Counter(str(s.get("threads", "?")) for s in trained.values())
    lines += [
        "",
        "Runs by device: "
        + ", ".join(f"{d} ({n})" for d, n in sorted(devices.items()))
        + "; by torch threads per job: "
        + ", ".join(f"{t} ({n})" for t, n in sorted(threads.items()))
        + ".",
        "",
    ]

    lines += [
        "## Configuration and seeds",
        "",
        "- **Configuration:** "
        + ", ".join(f"`{c}`" for c in configfiles)
        + " (validated against `config/schema.yaml`)",
        f"- **Training seeds:** {', '.join(str(s) for s in seeds)}; each run seeds torch, numpy and its batch order "
        "from its seed",
        f"- **Data seed:** {data_seed} (the train/validation/test split of every dataset)",
        f"- **Runs:** {len(runs)} ({len({(r['dataset'], r['model']) for r in runs})} model–dataset pairs)",
        "",
    ]

    lines += [
        "## Wall times",
        "",
        "Training and evaluation of every run, in seconds (mean over seeds; from `timing.json` and `metrics.json`).",
        "",
    ]
    for path, run in zip(metrics, runs):  # what training cost lies beside the run's metrics (timing.json)
        run["train_wall_time_s"] = read_json(Path(path).with_name("timing.json"))["train_wall_time_s"]
    by_pair: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        by_pair[(run["dataset"], run["model"])].append(run)
    rows = []
    for (dataset, model), group in sorted(by_pair.items()):
        train = statistics.fmean(r["train_wall_time_s"] for r in group)
        evaluate = statistics.fmean(r["eval_wall_time_s"] for r in group)
        rows.append([dataset, model, str(len(group)), f"{train:.1f}", f"{evaluate:.1f}"])
    lines += _table(["dataset", "model", "seeds", "train (s)", "evaluate (s)"], rows)
    total_train = sum(r["train_wall_time_s"] for r in runs)
    total_eval = sum(r["eval_wall_time_s"] for r in runs)
    job_times = _job_seconds(jobs, metadata_dir)
    lines += [
        "",
        "Job time by stage, summed over jobs (on 2 cores, jobs run two at a time, so the wall time of",
        "the study is roughly half the total):",
        "",
    ]
    stage_rows = [["train", str(len(runs)), f"{total_train:.0f}"], ["evaluate", str(len(runs)), f"{total_eval:.0f}"]]
    stage_rows += [[rule, str(len(t)), f"{sum(t):.0f}"] for rule, t in sorted(job_times.items())]
    lines += _table(["stage / rule", "jobs", "seconds"], stage_rows)
    total = total_train + total_eval + sum(sum(t) for t in job_times.values())
    lines += ["", f"Total job time: {total:.0f} s ({total / 60:.1f} min).", ""]
    return "\n".join(lines)


def write_environment(out: Path, **kwargs) -> None:
    write_text_atomic(out, markdown(**kwargs))
