# Shared helpers: which runs exist, their settings, and the source files each job runs.
import json

from vaeflow.config import evaluation_settings, run_config
from vaeflow.provenance import source_files
from vaeflow.site.quarto import QUARTO_MISSING, quarto_available

DATASETS = list(config["datasets"])
MODELS = list(config["models"])
SEEDS = [int(s) for s in config["seeds"]]
RUN = "results/{dataset}/{model}/seed{seed}"
# The conda route (`--sdm conda`): the same pins as pyproject.toml, plus Quarto.
CONDA_ENV = "../../environment.yml"


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    seed=r"\d+",


def code(*modules):
    """Source files (relative to the working directory) that the given modules run."""
    files = set()
    for module in modules:
        files.update(source_files(module, SRC))
    return sorted(os.path.relpath(f) for f in files)


def run_settings(wildcards):
    """The run config of one (dataset, model, seed) as JSON: a params value, so a change reruns it."""
    return json.dumps(run_config(config, wildcards.dataset, wildcards.model, int(wildcards.seed)), sort_keys=True)


def teacher_checkpoint(wildcards):
    """The trained teacher of a run that learns by density distillation (else nothing)."""
    run = run_config(config, wildcards.dataset, wildcards.model, int(wildcards.seed))
    teacher = run["training"].get("teacher")
    return [f"results/{wildcards.dataset}/{teacher}/seed{wildcards.seed}/checkpoint.pt"] if teacher else []


def all_runs(pattern):
    return expand(pattern, dataset=DATASETS, model=MODELS, seed=SEEDS)


def all_targets():
    targets = ["results/site-src"]
    if quarto_available():
        targets.append("results/site")
    return targets


def announce_site():
    if not quarto_available():
        print("\n" + "=" * 78 + f"\nvaeflow: SITE NOT RENDERED. {QUARTO_MISSING}\n" + "=" * 78 + "\n", file=sys.stderr)
