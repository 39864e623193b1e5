"""Which logit squeeze α each image dataset should use: chosen on the validation split.

The logit pre-processing of the flows (Real NVP's ``s = α + (1 − 2α)·y/K``, ``h = logit(s)``;
:class:`vaeflow.models.transforms.LogitPreprocess`) moves their bits/dim by a tenth of a bit or
more with α. For every image dataset of a study and every α of a grid, this trains the study's
MAF (the cheapest flow that takes the option) at the study's settings for that dataset (its
parameter budget, step ceiling, early stopping), with only ``logit_alpha`` changed, and records
its best validation bits/dim. The α with the lowest one is the dataset's choice; the config's
``logit_alpha`` block holds the chosen values and the models page shows this table beside them.

    python benchmarks/logit_alpha.py --config config/config.yaml --out benchmarks/results/logit_alpha.json
    python benchmarks/logit_alpha.py --config config/smoke.yaml --alphas 0.01 0.05 --datasets digits
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

from vaeflow.config import load_config, run_config
from vaeflow.data import build_dataset, load_prepared
from vaeflow.io import write_json_atomic

#: the grid: the MAF paper's 1e-6 (Papamakarios et al. 2017), Real NVP's 0.05 (Dinh et al. 2017) and one between
ALPHAS = (1e-6, 0.01, 0.05)
#: the flow that stands in for all of them: one MADE pass per block, the cheapest to train to convergence
PROBE_MODEL = "maf"


def sweep(
    config: dict, dataset: str, alphas: list[float], data_dir: Path | None, seed: int, done: list[dict]
) -> list[dict]:
    """Best validation bits/dim of :data:`PROBE_MODEL` on ``dataset`` for each α, trained as the study trains it.

    ``done``: rows of an earlier, interrupted sweep with the same settings; their α are not trained again.
    """
    from vaeflow.training.engine import train

    prepared = data_dir / f"{dataset}.npz" if data_dir else None
    if prepared is not None and prepared.exists():
        data = load_prepared(prepared)
    else:
        data = build_dataset(dataset, config["datasets"][dataset], config.get("data_seed", 0))
    rows = []
    for alpha in alphas:
        run = copy.deepcopy(run_config(config, dataset, PROBE_MODEL, seed))
        run["options"]["logit_alpha"] = float(alpha)
        earlier = [r for r in done if r["dataset"] == dataset and r["alpha"] == float(alpha) and r["run"] == run]
        if earlier:
            rows.append(earlier[0])
            continue
        with tempfile.TemporaryDirectory() as tmp:
            trained = train(run, data, tmp, device="cpu", progress=False)
        rows.append(
            {
                "dataset": dataset,
                "alpha": float(alpha),
                "val_bpd": trained["best_val_bits_per_dim"],
                "best_step": trained["best_step"],
                "steps": trained["steps"],
                "converged": trained["converged"],
                "parameters": trained["parameters"],
                "run": run,
            }
        )
        print(
            f"{dataset} α={alpha:g}: best validation {trained['best_val_bits_per_dim']:.4f} bits/dim at step "
            f"{trained['best_step']} of {trained['steps']}",
            flush=True,
        )
    return rows


def chosen(rows: list[dict]) -> dict[str, float]:
    """Per dataset, the α with the lowest best validation bits/dim."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["dataset"] not in best or row["val_bpd"] < best[row["dataset"]]["val_bpd"]:
            best[row["dataset"]] = row
    return {dataset: row["alpha"] for dataset, row in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--schema", default="config/schema.yaml")
    parser.add_argument(
        "--out",
        default="benchmarks/results/logit_alpha.json",
        help="written after each dataset; rows already there (same settings) are not trained again",
    )
    parser.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    parser.add_argument("--datasets", nargs="+", help="image datasets of the config (default: all of them)")
    parser.add_argument("--data-dir", type=Path, help="prepared datasets (<name>.npz) to reuse, e.g. results/data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = load_config(args.config, args.schema)
    import torch

    torch.set_num_threads(int(config["threads"]))  # as the study's jobs: more threads than cores would spin
    if PROBE_MODEL not in config["models"]:
        print(
            f"error: {args.config} has no {PROBE_MODEL!r} model to sweep α with; add it or pass another config",
            file=sys.stderr,
        )
        return 2
    datasets = args.datasets or [d for d in config["datasets"] if d != "toy2d"]
    done = json.loads(Path(args.out).read_text())["rows"] if Path(args.out).exists() else []
    rows: list[dict] = []
    for dataset in datasets:
        rows += sweep(config, dataset, args.alphas, args.data_dir, args.seed, done)
        write_json_atomic(
            args.out,
            {"model": PROBE_MODEL, "seed": args.seed, "config": args.config, "chosen": chosen(rows), "rows": rows},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
