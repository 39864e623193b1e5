# Shared helpers: which runs exist, their settings, and the source files each job runs.
import functools
import json
import shlex

from vaeflow.analysis import declared_outputs
from vaeflow.config import analysis_settings, evaluation_settings, probe_settings, run_config, trains_on
from vaeflow.data import IMAGE_DATASETS
from vaeflow.probes import NEEDS_OTHER_DATASETS, NOTEBOOK_KEYS, PROBES, applies
from vaeflow.provenance import source_files
from vaeflow.site.quarto import QUARTO_MISSING, quarto_available

DATASETS = list(config["datasets"])
MODELS_IN_STUDY = list(config["models"])
SEEDS = [int(s) for s in config["seeds"]]
RUN = "results/{dataset}/{model}/seed{seed}"
# The conda route (`--sdm conda`): the same pins as pyproject.toml, plus Quarto.
CONDA_ENV = "../../environment.yml"


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS_IN_STUDY),
    seed=r"\d+",
    codeset=r"[A-Za-z0-9_.+]+",


def code(*modules):
    """The code-digest file (see code.smk) of the source files the given modules run. A job declares
    this one file instead of every source file, so the scheduler stats a few dozen files rather
    than ~15 per job, and a job reruns exactly when the content of its code changes."""
    return [f"results/code/{'+'.join(m.removeprefix('vaeflow.') for m in modules)}.sha256"]


def code_files(codeset):
    """Source files (relative to the working directory) of a code-digest file's name, the
    ``+``-joined modules of :func:`code`."""
    return list(_code(tuple(f"vaeflow.{m}" for m in codeset.split("+"))))


@functools.cache
def _code(modules):
    # cached: every digest of the same modules asks for the same list while the DAG is built
    files = set()
    for module in modules:
        files.update(source_files(module, SRC))
    return tuple(sorted(os.path.relpath(f) for f in files))


def run_settings(wildcards):
    """The run config of one (dataset, model, seed) as JSON: a params value, so a change reruns it."""
    return json.dumps(run_config(config, wildcards.dataset, wildcards.model, int(wildcards.seed)), sort_keys=True)


def teacher_checkpoint(wildcards):
    """The trained teacher of a run that learns by density distillation (else nothing)."""
    run = run_config(config, wildcards.dataset, wildcards.model, int(wildcards.seed))
    teacher = run["training"].get("teacher")
    return [f"results/{wildcards.dataset}/{teacher}/seed{wildcards.seed}/checkpoint.pt"] if teacher else []


def computed_from_run(wildcards):
    """The run's evaluation outputs and its probes folder, as ``--computed-from-run`` arguments."""
    paths = [*rules.evaluate.output, f"{RUN}/probes"]
    return " ".join(f"--computed-from-run {p.format(**wildcards)}" for p in paths)


# What one job of each stage asks of the machine or of a scheduler (SLURM, profiles/slurm):
# memory in MB, run time in minutes and GPUs. Sized for the default study; a config's
# `job_resources` block overrides any of them per stage (config/paper.yaml: hours and one GPU
# per training, evaluation and probe job). Site settings (partition, account) live in profiles.
JOB_RESOURCES = {
    "data": {"mem_mb": 4000, "runtime": 20},  # a full-size set: up to 60,000 x 3,072 bytes, copied per split
    "train": {"mem_mb": 2000, "runtime": 30, "gpu": 0},
    "evaluate": {"mem_mb": 2000, "runtime": 30, "gpu": 0},
    "probe": {"mem_mb": 3000, "runtime": 30, "gpu": 0},
    "benchmark": {"mem_mb": 3000, "runtime": 20},
    "analysis": {"mem_mb": 4000, "runtime": 30},
    "site": {"mem_mb": 2000, "runtime": 15},
}


def job_resources(stage):
    """The resources of one stage's jobs: :data:`JOB_RESOURCES` updated by the config's block."""
    return {**JOB_RESOURCES[stage], **config.get("job_resources", {}).get(stage, {})}


def all_cores():
    """Threads of a job that should hold a whole machine: every core of a local run (``--cores``);
    a cluster run has no such total, so one thread on a node held exclusively (see benchmark.smk)."""
    return workflow.resource_settings.cores or 1


def all_runs(pattern):
    """``pattern`` for every run of the study: each model on each dataset it is not left out of, each seed."""
    return [
        pattern.format(dataset=dataset, model=model, seed=seed)
        for dataset in DATASETS
        for model in MODELS_IN_STUDY
        if trains_on(config, model, dataset)
        for seed in SEEDS
    ]


def probe_runs(probe):
    """The probe files of every run the probe covers (:func:`vaeflow.probes.applies`), for an analysis's inputs."""
    return [
        f"results/{dataset}/{model}/seed{seed}/probes/{probe}.npz"
        for dataset in DATASETS
        for model in MODELS_IN_STUDY
        for seed in SEEDS
        if trains_on(config, model, dataset) and applies(probe, model, dataset, image=dataset in IMAGE_DATASETS)
    ]


def probes_of(model, dataset):
    """The probes that cover the run of ``model`` on ``dataset`` (:func:`vaeflow.probes.applies`), in registry order."""
    return tuple(p for p in PROBES if applies(p, model, dataset, image=dataset in IMAGE_DATASETS))


def probe_blocks():
    """The runs' probe jobs as ``(probes, datasets, models)`` blocks: every run of a model of ``models``
    on a dataset of ``datasets`` runs exactly ``probes``, and no run is in two blocks, so one rule per
    block (evaluate.smk) writes each run's probe files and no file has two rules. One block per set
    of probes, split by dataset only where the models of one dataset would fall into another set."""
    runs = {}
    for dataset in DATASETS:
        for model in MODELS_IN_STUDY:
            if trains_on(config, model, dataset) and probes_of(model, dataset):
                runs.setdefault(probes_of(model, dataset), []).append((dataset, model))
    blocks = []
    for probes, pairs in runs.items():
        datasets = list(dict.fromkeys(d for d, _ in pairs))
        models = list(dict.fromkeys(m for _, m in pairs))
        clash = any(trains_on(config, m, d) and probes_of(m, d) != probes for d in datasets for m in models)
        if not clash:
            blocks.append((probes, datasets, models))
        else:
            blocks += [(probes, [d], [m for dd, m in pairs if dd == d]) for d in datasets]
    return blocks


def probe_rule_name(probes, index, blocks):
    """``probe_<probe>_<probe>...``, numbered when two blocks run the same probes."""
    name = "probe_" + "_".join(probes)
    return name if sum(b[0] == probes for b in blocks) == 1 else f"{name}_{index}"


def other_datasets(wildcards, probes):
    """The other prepared datasets of the study, for probes that compare against them."""
    if not NEEDS_OTHER_DATASETS & set(probes):
        return {}
    return {name: f"results/data/{name}.npz" for name in DATASETS if name != wildcards.dataset}


# the datasets benchmarks/speed.py runs its pairs on, where the study has them
BENCHMARK_DATASETS = [d for d in ("mnist", "toy2d", "digits") if d in DATASETS]


def benchmark_datasets(model):
    """The datasets one model's benchmark reads: the benchmark's own, and those the study leaves it
    out of (their training step is timed, to show what leaving it out saved)."""
    left_out = [d for d in (config["models"][model].get("left_out") or {}) if d in DATASETS]
    return BENCHMARK_DATASETS + [d for d in left_out if d not in BENCHMARK_DATASETS]


def benchmark_study(model):
    """What one model's benchmark reads from the config, as JSON: a change reruns it."""
    datasets = benchmark_datasets(model)
    return json.dumps(
        {
            "datasets": {d: config["datasets"][d] for d in datasets},
            "models": {model: config["models"][model]},
            "training": {"batch_size": config["training"]["batch_size"]},
            "parameter_budget": {d: n for d, n in (config.get("parameter_budget") or {}).items() if d in datasets},
        },
        sort_keys=True,
    )


# Snakemake's own HTML report (`snakemake --report results/report.html`, which the README's
# main command writes after the run): every table (its CSV) and figure (its SVG) of an
# analysis, in one category per analysis (REPORT_CATEGORIES, analyses.smk), captioned by
# workflow/report/{tables,figures}/<stem>.rst: files generated from the captions the analysis modules
# declare beside their TABLES and FIGURES (`python -m vaeflow.analysis.captions`; tests/test_captions.py
# fails when one drifts from its module).
REPORT_CAPTIONS = "workflow/report"


def in_report(path, analysis, kind, stem):
    """``path`` flagged for the report; ``kind`` is "tables" or "figures" (the caption's folder)."""
    return report(
        path,
        # a caption path is relative to the rules file that uses it (workflow/rules/)
        caption=os.path.relpath(f"{REPORT_CAPTIONS}/{kind}/{stem}.rst", "workflow/rules"),
        category=REPORT_CATEGORIES[analysis],
        subcategory=kind.capitalize(),
        labels={kind[:-1]: stem},
    )


def analysis_outputs(analysis):
    """The files an analysis notebook writes, from its module's TABLES and FIGURES; each table's
    CSV and each figure's SVG are flagged for the report."""
    declared = declared_outputs(analysis)  # read from the source: no analysis libraries at parse time
    tables, figures = [], []
    for stem in declared["TABLES"]:
        tables += [in_report(f"results/tables/{stem}.csv", analysis, "tables", stem), f"results/tables/{stem}.md"]
    for stem in declared["FIGURES"]:
        figures += [f"results/figures/{stem}.vl.json", in_report(f"results/figures/{stem}.svg", analysis, "figures", stem),
                    f"results/figures/{stem}.png"]
    return {
        "notebook": f"results/notebooks/{analysis}.ipynb",
        "tables": tables,
        "figures": figures,
        "variables": f"results/variables/{analysis}.yml",
    }


# The papermill call of every analysis notebook. One constant string, because Snakemake evaluates a
# rule's `shell:` expression again when the job runs, when a loop that generated the rules has moved
# on: what differs between the analyses comes in through params (notebook_files).
NOTEBOOK_COMMAND = (
    "python -m vaeflow notebook {input.notebook} {output.notebook} -p metrics={params.metrics:q} "
    "{params.files} -p settings={params.settings:q} -p tables_dir='\"results/tables\"' "
    "-p figures_dir='\"results/figures\"' -p variables_out='\"{output.variables}\"' > {log} 2>&1"
)
# the inputs a notebook takes as parameters, in this order: lists of files, or one file
NOTEBOOK_FILE_PARAMETERS = {"probes": list, "speed": str, "baselines": list}


def notebook_files(inputs):
    """A params function: the ``-p name=value`` papermill options of the files of ``inputs`` (an analysis
    rule's inputs besides the notebook and metrics) that its notebook takes as parameters, as JSON."""
    names = [name for name in NOTEBOOK_FILE_PARAMETERS if name in inputs]

    def options(wc, input):
        values = {
            name: list(input[name]) if NOTEBOOK_FILE_PARAMETERS[name] is list else str(input[name])
            for name in names
        }
        return " ".join(f"-p {name}={shlex.quote(json.dumps(value))}" for name, value in values.items())

    return options


def json_list(name):
    """A params function: the rule's input ``name`` (a list of files) as a JSON list, for a notebook."""
    return lambda wc, input: json.dumps(list(input[name]))


def all_targets():
    targets = ["results/site-src"]
    if quarto_available():
        targets.append("results/site")
    return targets


def check_outputs_writable(jobs):
    """Stop before any job runs (and before Snakemake removes a job's old outputs) when a folder
    that a planned job writes to is not writable, naming each one once."""
    from vaeflow.io import unwritable_folders

    paths = [path for job in jobs for path in (*job.output, *job.log, *([job.benchmark] if job.benchmark else []))]
    folders = unwritable_folders(paths)
    if folders:
        shown = "\n  ".join(map(os.path.relpath, folders[:20])) + ("\n  ..." if len(folders) > 20 else "")
        raise SystemExit(
            f"vaeflow: cannot write results: {len(folders)} folder(s) that planned jobs write to are not writable "
            f"by this user (permissions or a read-only file system):\n  {shown}\nNothing was run or removed. Make them "
            f"writable (e.g. chmod -R u+w results) or run the study from a checkout you can write to, then rerun."
        )


def announce_site():
    if not quarto_available():
        print("\n" + "=" * 78 + f"\nvaeflow: SITE NOT RENDERED. {QUARTO_MISSING}\n" + "=" * 78 + "\n", file=sys.stderr)
