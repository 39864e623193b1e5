"""The models page's account of the study's design choices, from the config and their evidence.

Three choices shape every comparison and are set per dataset in the config: the parameter budget
(``parameter_budget``), the flows' logit squeeze α (``logit_alpha``, chosen on the validation
split by ``benchmarks/logit_alpha.py``, whose result file is read here) and which models are left
out of which datasets (``models.<m>.left_out``, with the config's reason). This module writes
them as one Markdown body the models page includes (rule ``design_page``). Where the config's α
is not the sweep's best, or the sweep ran at other settings than the study's, the text says so:
it never presents a stale sweep as the evidence for the current choice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vaeflow.io import write_text_atomic

#: the datasets' names as the pages write them
DATASET_NAMES = {
    "digits": "digits",
    "mnist": "MNIST-14",
    "textures": "textures",
    "toy2d": "toy2d",
    "mnist_full": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
}

#: what the sweep's run settings may differ in from the study's without making it another experiment
IGNORED_SETTINGS = ("seed",)


def _name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def _budget_lines(config: Mapping[str, Any]) -> list[str]:
    budgets = config.get("parameter_budget") or {}
    if not budgets:
        return ["No dataset has a parameter budget in this build: each model trained at the width its options give."]
    listed = ", ".join(f"{_name(d)} {int(n):,}" for d, n in budgets.items() if d in config["datasets"])
    return [
        f"**Parameter budget.** Every model's width is fitted so that its parameter count is nearest its "
        f"dataset's budget ({listed} parameters); the rest of each architecture is the paper's."
    ]


def _same_settings(row: Mapping[str, Any], study_run: Mapping[str, Any]) -> bool:
    ran = {k: v for k, v in row.get("run", {}).items() if k not in IGNORED_SETTINGS}
    wanted = {k: v for k, v in study_run.items() if k not in IGNORED_SETTINGS}
    ran_options = {k: v for k, v in ran.pop("options", {}).items() if k != "logit_alpha"}
    wanted_options = {k: v for k, v in wanted.pop("options", {}).items() if k != "logit_alpha"}
    return ran == wanted and ran_options == wanted_options


def alpha_section(config: dict[str, Any], sweep: Mapping[str, Any] | None) -> list[str]:
    """The α table (one row per dataset and α of the sweep) and one sentence per dataset on the choice."""
    from vaeflow.config import run_config, trains_on

    alphas = config.get("logit_alpha") or {}
    if not alphas:
        return ["**Logit squeeze α.** This build sets no per-dataset `logit_alpha`: each flow used its own option."]
    lines = [
        "**Logit squeeze α.** The flows' logit pre-processing (above) uses one α per image dataset, "
        "given to every flow that takes the option."
    ]
    rows = list((sweep or {}).get("rows", []))
    model = (sweep or {}).get("model", "maf")
    if not rows:
        lines.append(
            "No validation sweep of α is on record (`benchmarks/results/logit_alpha.json`): the values "
            + ", ".join(f"{_name(d)} {a:g}" for d, a in alphas.items())
            + " are the config's, not chosen by evidence in this build."
        )
        return lines
    lines += [
        "",
        "| dataset | α | best validation bits/dim | at step | of | stopped by | used here |",
        "|:--|--:|--:|--:|--:|:--|:--|",
    ]
    for row in rows:
        used = "yes" if alphas.get(row["dataset"]) == row["alpha"] else ""
        lines.append(
            f"| {_name(row['dataset'])} | {row['alpha']:g} | {row['val_bpd']:.4f} | {row['best_step']:,} | "
            f"{row['steps']:,} | {'patience' if row['converged'] else 'step ceiling'} | {used} |"
        )
    lines.append("")
    for dataset, alpha in alphas.items():
        mine = [r for r in rows if r["dataset"] == dataset]
        if not mine:
            lines.append(f"- {_name(dataset)}: α = {alpha:g}, not covered by the sweep.")
            continue
        best = min(mine, key=lambda r: r["val_bpd"])
        if best["alpha"] == alpha:
            runner_up = sorted(r["val_bpd"] for r in mine)[1] if len(mine) > 1 else None
            margin = f", {runner_up - best['val_bpd']:.4f} bits/dim below the next α" if runner_up is not None else ""
            sentence = f"- {_name(dataset)}: α = {alpha:g}, the sweep's best on the validation split{margin}."
        else:
            sentence = (
                f"- {_name(dataset)}: α = {alpha:g} is **not** the sweep's best on the validation split "
                f"(α = {best['alpha']:g}, {best['val_bpd']:.4f} bits/dim)."
            )
        if trains_on(config, model, dataset) and not _same_settings(best, run_config(config, dataset, model, 0)):
            sentence += (
                " The sweep ran at other settings than this build's; rerun "
                "`python benchmarks/logit_alpha.py` to choose for these."
            )
        lines.append(sentence)
    lines += [
        "",
        f"The sweep trains the study's {model.upper()} (the cheapest flow to train to convergence) at "
        f"each α with everything else as in the study, one seed, and compares the best validation bits/dim; "
        f"`benchmarks/logit_alpha.py` reruns it and writes `benchmarks/results/logit_alpha.json`.",
    ]
    return lines


def left_out_lines(config: dict[str, Any], speed: Mapping[str, Any] | None) -> list[str]:
    """One bullet per model left out of a dataset: the config's reason and, where the speed
    benchmark timed it (``left_out`` of ``results/benchmarks/speed.json``), its measured step."""
    from vaeflow.config import left_out_runs

    runs = left_out_runs(config)
    if not runs:
        return ["**Left out.** Every model trains on every dataset of this build."]
    timed = {(r["model"], r["dataset"]): r for r in (speed or {}).get("left_out", [])}
    lines = ["**Left out.** Not every model trains on every dataset of this build:", ""]
    for r in runs:
        line = f"- {r['model']} on {_name(r['dataset'])}: {r['reason'].rstrip('.')}."
        step = timed.get((r["model"], r["dataset"]))
        if step is not None:
            line += (
                f" Measured by this build's speed benchmark: one training step of {step['batch_size']} examples at "
                f"{step['parameters']:,} parameters took {step['step_time_s']:.2f} s."
            )
        else:
            line += " Its cost per step was not measured in this build."
        lines.append(line)
    return lines


def markdown(config: dict[str, Any], sweep: Mapping[str, Any] | None, speed: Mapping[str, Any] | None = None) -> str:
    parts = [_budget_lines(config), alpha_section(config, sweep), left_out_lines(config, speed)]
    return "\n\n".join("\n".join(p) for p in parts) + "\n"


def _read(path: str | None) -> dict[str, Any] | None:
    return json.loads(Path(path).read_text(encoding="utf-8")) if path and Path(path).exists() else None


def write_design(
    out: Path, configfiles: Sequence[str], schema: str, sweep_path: str | None, speed_path: str | None = None
) -> None:
    """Read the study's config files, the α sweep and the speed benchmark (if any) and write the Markdown body."""
    from vaeflow.config import merged, read_config_files, validate_config

    files = read_config_files(configfiles)
    config = validate_config(merged(files), schema, files=files, check_device=False)
    write_text_atomic(out, markdown(config, _read(sweep_path), _read(speed_path)))
