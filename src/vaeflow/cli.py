"""Command-line entry points the workflow rules call: ``python -m vaeflow <command> ...``.

Each command reads its declared inputs, writes its outputs atomically, and exits
non-zero with one clear message on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "config/config.yaml"


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def cmd_prepare_data(args: argparse.Namespace) -> None:
    from vaeflow.data import build_dataset, save_prepared

    dataset = build_dataset(args.dataset, args.options, args.seed)
    manifest = save_prepared(dataset, args.out, Path(args.out).with_suffix(".json"))
    sizes = ", ".join(f"{k} {v}" for k, v in manifest["split_sizes"].items())
    print(f"prepared {args.dataset}: {sizes}; example shape {tuple(manifest['example_shape'])}")


def cmd_download_data(args: argparse.Namespace) -> None:
    from vaeflow.data.download import download_dataset, download_file, raw_files

    if args.file:
        paths = [download_file(args.dataset, name, args.out_dir, timeout=args.timeout) for name in args.file]
    else:
        paths = download_dataset(args.dataset, args.out_dir, timeout=args.timeout)
    sizes = {entry.name: entry.size for entry in raw_files(args.dataset)}
    for path in paths:
        print(f"{args.dataset}: {path} ({sizes[path.name]:,} bytes, sha256 verified)")


def cmd_train(args: argparse.Namespace) -> None:
    from vaeflow.data import load_prepared
    from vaeflow.training.engine import train
    from vaeflow.training.superseded import set_aside, settle

    set_aside(args.out_dir, args.computed_from_run or [])
    _set_threads(args.threads)
    data = load_prepared(args.data)
    teacher = None
    if args.teacher:
        from vaeflow.training.checkpoint import load_checkpoint, model_from_checkpoint
        from vaeflow.training.seeding import resolve_device

        teacher = model_from_checkpoint(load_checkpoint(args.teacher), resolve_device(args.device))
    summary = train(args.run, data, args.out_dir, device=args.device, progress=not args.quiet, teacher=teacher)
    settle(args.out_dir, Path(args.out_dir) / "checkpoint.pt", Path(args.out_dir) / "train.json")
    print(
        f"best validation bits/dim {summary['best_val_bits_per_dim']:.4f} at step {summary['best_step']} "
        f"({summary['train_wall_time_s']:.1f} s)"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from vaeflow.evaluation.run import evaluate_run

    _set_threads(args.threads)
    metrics = evaluate_run(
        args.checkpoint,
        args.train_summary,
        args.data,
        args.settings,
        args.metrics,
        args.samples,
        args.scores,
        device=args.device,
    )
    test = metrics["test"]
    print(
        f"{metrics['model']} on {metrics['dataset']} seed {metrics['seed']}: test {test['bits_per_dim']:.4f} "
        f"bits/dim ({test['bound']})"
    )


def cmd_baselines(args: argparse.Namespace) -> None:
    from vaeflow.evaluation.baselines import write_baselines

    result = write_baselines(args.data, args.out, args.scores)
    for entry in result["baselines"]:
        bpd = entry["bits_per_dim"]
        print(
            f"{result['dataset']} baseline {entry['label']} ({entry['quantity']}): "
            + ", ".join(f"{split} {bpd[split]:.4f}" for split in ("train", "val", "test"))
            + " bits/dim"
        )


def cmd_probe(args: argparse.Namespace) -> None:
    from vaeflow.probes.run import run_probes

    _set_threads(args.threads)
    done = run_probes(
        args.settings,
        args.checkpoint,
        args.data,
        dict(args.out),
        others=dict(args.other or []),
        device=args.device,
        code=dict(args.code or []),
    )
    for name, how in done.items():
        print(f"probe {name}: {how} {dict(args.out)[name]}")


def cmd_notebook(args: argparse.Namespace) -> None:
    from vaeflow.analysis.notebooks import run_notebook

    run_notebook(args.input, args.output, dict(args.param or []), failed_dir=args.failed_dir)


def cmd_variables(args: argparse.Namespace) -> None:
    from vaeflow.analysis.variables import merge_variables

    merge_variables(args.inputs, args.output)


def cmd_site(args: argparse.Namespace) -> None:
    from vaeflow.site import quarto

    if args.action == "stage":
        quarto.stage(args.report, args.results, args.variables, args.out)
    elif args.action == "check":
        problems = quarto.check_project(args.report_dir)
        if problems:
            raise SystemExit("Quarto project check failed:\n  " + "\n  ".join(problems))
        print(
            f"Quarto project {args.report_dir}: every page, embed, include, cross-reference, variable and citation "
            "resolves"
        )
    else:
        quarto.render(args.report_dir, args.out)


def cmd_provenance(args: argparse.Namespace) -> None:
    from vaeflow.provenance import git_version

    metadata_dir = Path(args.metadata)
    if args.action == "reproduce":
        from vaeflow.site.reproduce import write_reproduce

        write_reproduce(args.inputs, Path(args.out), Path("."), metadata_dir, args.configfile, git_version())
    else:
        from vaeflow.site.environment import write_environment

        write_environment(
            Path(args.out),
            metrics=args.metrics,
            summaries=args.summaries,
            jobs=args.inputs,
            metadata_dir=metadata_dir,
            configfiles=args.configfile,
            seeds=args.seeds,
            data_seed=args.data_seed,
        )


def cmd_design(args: argparse.Namespace) -> None:
    from vaeflow.site.design import write_design

    write_design(Path(args.out), args.configfile, args.schema, args.sweep, args.speed)


def cmd_export_results(args: argparse.Namespace) -> None:
    from vaeflow.archive import export_results

    export_results(
        Path("."),
        Path(args.archive),
        configfiles=args.configfile or [DEFAULT_CONFIG],
        stage=args.stage,
        include=args.include or [],
    )


def cmd_import_results(args: argparse.Namespace) -> None:
    from vaeflow.archive import import_results

    import_results(
        Path("."),
        Path(args.archive),
        configfiles=args.configfile or [DEFAULT_CONFIG],
        force=args.force,
        overwrite=args.overwrite,
        check=args.check,
    )


def _param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    return name, _json_arg(value)


def _other(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaeflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare-data", help="build one dataset into results/data/")
    p.add_argument("--dataset", required=True)
    p.add_argument("--options", type=_json_arg, default={})
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="the .npz to write; the manifest goes beside it as .json")
    p.set_defaults(func=cmd_prepare_data)

    p = sub.add_parser(
        "download-data", help="fetch the raw files of a full-size dataset into resources/, sha256-verified"
    )
    p.add_argument("--dataset", required=True, help="mnist_full, fashion_mnist or cifar10")
    p.add_argument(
        "--file", action="append", help="only this raw file (repeatable); default: all of the dataset's files"
    )
    p.add_argument("--out-dir", help="directory to write into; default resources/<dataset>")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a download fails")
    p.set_defaults(func=cmd_download_data)

    p = sub.add_parser("train", help="train one (dataset, model, seed) run")
    p.add_argument("--run", type=_json_arg, required=True, help="the run config as JSON")
    p.add_argument("--data", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--teacher", help="checkpoint of a trained teacher, for probability density distillation")
    p.add_argument(
        "--computed-from-run",
        action="append",
        metavar="PATH",
        help="a result in the run folder computed from its training outputs: set aside while it retrains, "
        "restored only if the retrain writes the same bytes (repeatable; vaeflow.training.superseded)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a trained run on its test set")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--train-summary", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--settings", type=_json_arg, required=True, help="the evaluation block of the config as JSON")
    p.add_argument("--metrics", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--scores", required=True, help="the .npz of per-example test scores to write")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("baselines", help="sanity baselines of one prepared dataset (see vaeflow.evaluation.baselines)")
    p.add_argument("--data", required=True, help="the prepared .npz (its manifest .json beside it)")
    p.add_argument("--out", required=True, help="the baselines .json to write")
    p.add_argument("--scores", required=True, help="the .npz of per-example test log-likelihoods to write")
    p.set_defaults(func=cmd_baselines)

    p = sub.add_parser("probe", help="run the analysis probes of one trained run in one process (see vaeflow.probes)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument(
        "--settings",
        type=_json_arg,
        required=True,
        help='{"<probe>": the analyses.<probe> block of the config, ...} as JSON: the probes to run',
    )
    p.add_argument(
        "--out", type=_other, action="append", required=True, help="PROBE=PATH: the .npz to write, per probe"
    )
    p.add_argument("--code", type=_other, action="append", help="PROBE=PATH of the probe's code digest (its memo key)")
    p.add_argument("--other", type=_other, action="append", help="NAME=PATH of another prepared dataset")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("notebook", help="execute an analysis notebook with papermill")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("-p", "--param", type=_param, action="append", help="NAME=JSON parameter")
    p.add_argument("--failed-dir", default="results/logs/notebooks")
    p.set_defaults(func=cmd_notebook)

    p = sub.add_parser("variables", help="merge the analyses' variables into one file for the site")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_variables)

    p = sub.add_parser("site", help="stage, check or render the Quarto website")
    p.add_argument("action", choices=["stage", "check", "render"])
    p.add_argument("--report", default="report")
    p.add_argument("--results", default="results")
    p.add_argument("--variables", default="results/variables.yml")
    p.add_argument("--report-dir", default="results/site-src/report")
    p.add_argument("--out", default="results/site")
    p.set_defaults(func=cmd_site)

    p = sub.add_parser(
        "provenance", help="write the site's Reproduce or Environment page body from Snakemake's job records"
    )
    p.add_argument("action", choices=["reproduce", "environment"])
    p.add_argument(
        "inputs",
        nargs="*",
        help="reproduce: the site's tables, figures and variables; "
        "environment: outputs whose jobs' run times are listed",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--metadata", default=".snakemake/metadata", help="Snakemake's job records")
    p.add_argument("--configfile", action="append", default=[], help="the study's config file(s)")
    p.add_argument("--metrics", nargs="*", default=[], help="environment: every run's metrics.json")
    p.add_argument("--summaries", nargs="*", default=[], help="environment: every run's train.json")
    p.add_argument("--seeds", nargs="*", type=int, default=[])
    p.add_argument("--data-seed", type=int, default=0)
    p.set_defaults(func=cmd_provenance)

    p = sub.add_parser("design", help="write the models page's account of the budgets, logit alpha and left-out runs")
    p.add_argument("--configfile", action="append", required=True, help="the study's config file(s)")
    p.add_argument("--schema", default="config/schema.yaml")
    p.add_argument("--sweep", help="the logit-alpha sweep's result (benchmarks/logit_alpha.py)")
    p.add_argument("--speed", help="the speed benchmark's result (its left-out models' measured training step)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_design)

    from vaeflow.archive import DEFAULT_STAGE, INCLUDES, STAGE_HELP

    p = sub.add_parser(
        "export-results",
        help="pack the results a stage needs, Snakemake's records of their jobs and a "
        "manifest (sha256 of every file, code hashes per rule, config, versions, hardware) into one archive",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run in the project root of a finished study. Stages (what the archive holds, and so "
        "what reruns after an import):\n" + "\n".join(f"  {k}: {v}" for k, v in STAGE_HELP.items()),
    )
    p.add_argument(
        "archive",
        help="the archive to write: STUDY.tar, STUDY.tar.gz or STUDY.tar.zst (zstd needs the "
        "zstandard package); its sha256 goes beside it in STUDY.tar.gz.sha256",
    )
    p.add_argument(
        "--configfile",
        action="append",
        help=f"the study's config file(s), as given to snakemake; default {DEFAULT_CONFIG}",
    )
    p.add_argument(
        "--stage",
        choices=list(STAGE_HELP),
        default=DEFAULT_STAGE,
        help=f"the stage a reviewer runs from the archive (default {DEFAULT_STAGE})",
    )
    p.add_argument(
        "--include",
        action="append",
        choices=list(INCLUDES),
        help="also pack (repeatable): " + "; ".join(f"{k}: {v}" for k, v in INCLUDES.items()),
    )
    p.set_defaults(func=cmd_export_results)

    p = sub.add_parser(
        "import-results",
        help="check an archive of export-results completely, then restore its results "
        "and Snakemake's records so that nothing before its stage reruns",
    )
    p.add_argument("archive", help="the .tar, .tar.gz or .tar.zst written by export-results")
    p.add_argument(
        "--configfile",
        action="append",
        help=f"the study's config file(s), as given to snakemake; default {DEFAULT_CONFIG}",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="import even if the archive was made by other code or "
        "configuration (Snakemake then reruns what they changed; the import lists it)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace results/ files that hold other bytes")
    p.add_argument("--check", action="store_true", help="check the archive against this checkout; write nothing")
    p.set_defaults(func=cmd_import_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"vaeflow {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
