"""The whole workflow on config/smoke.yaml, in a temporary copy of the project."""

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from smoke import SMOKE, snakemake
from vaeflow.site.quarto import check_project, quarto_available

pytestmark = pytest.mark.workflow


def planned_jobs(project: Path, *args: str, config: list[str] = SMOKE) -> dict[str, int]:
    """Job counts per rule in a dry-run plan ({} when nothing is to be done)."""
    return plan_of(snakemake(project, *args, "-n", *config).stdout)[0]  # targets before --configfile (it takes several)


def plan_of(out: str) -> tuple[dict[str, int], set[str]]:
    """Job counts per rule, and the models named in the planned jobs' wildcards."""
    if "Nothing to be done" in out:
        return {}, set()
    table = out.split("Job stats:", 1)[1]
    counts = {
        rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M) if rule not in ("total", "all")
    }
    return counts, set(re.findall(r"model=(\w+)", out))


@pytest.fixture(scope="module")
def project(smoke_study):
    return smoke_study


def test_smoke_study_writes_every_result(project):
    config = yaml.safe_load((project / "config/smoke.yaml").read_text())
    for dataset in config["datasets"]:
        manifest = json.loads((project / f"results/data/{dataset}.json").read_text())
        assert manifest["name"] == dataset
        for model in config["models"]:
            for seed in config["seeds"]:
                run = project / f"results/{dataset}/{model}/seed{seed}"
                if dataset in (config["models"][model].get("left_out") or {}):
                    assert not run.exists(), f"{model} is left out of {dataset} but has a run there"
                    continue
                for name in (
                    "checkpoint.pt",
                    "curves.csv",
                    "train.json",
                    "timing.json",
                    "metrics.json",
                    "samples.npz",
                    "test_scores.npz",
                ):
                    assert (run / name).is_file(), run / name
                assert not (run / "resume.pt").exists()
                metrics = json.loads((run / "metrics.json").read_text())
                for key in ("bits_per_dim", "bound", "log_likelihood_nats"):
                    assert key in metrics["test"]
                assert math.isfinite(metrics["test"]["bits_per_dim"])
                assert metrics["seed"] == seed and metrics["parameters"] > 0
                assert json.loads((run / "timing.json").read_text())["train_wall_time_s"] > 0 and metrics["config_hash"]
                assert metrics["versions"]["torch"].startswith("2.13.0")
                # the smoke study runs on the CPU in float32, and says so
                assert (metrics["device"], metrics["train_device"], metrics["train_precision"]) == (
                    "cpu",
                    "cpu",
                    "fp32",
                )
                k = {**config["evaluation"], **config["models"][model].get("evaluation", {})}["iwae_k"]
                if model in ("vae", "vae_iaf"):
                    assert metrics["test"]["bound"] == f"iwae-{k}"
                elif model == "flowpp" and dataset != "toy2d":
                    assert metrics["test"]["bound"] == f"iw-{k}"
                if not metrics["exact"]:
                    assert metrics["test"]["iwae"]["k"] == k
                    assert metrics["test"]["iwae"]["bits_per_dim"] <= metrics["test"]["elbo_bits_per_dim"] + 0.05
                else:
                    assert model not in ("vae", "vae_iaf")
                    estimated = "(" in metrics["val"]["bound"]  # FFJORD's trace estimate on images
                    if dataset != "toy2d" and not estimated:  # a flow on images: IW-uniform-k, no looser
                        assert metrics["test"]["bound"] == f"iw-uniform-{k}" and metrics["test"]["iwae"]["k"] == k
                        single = metrics["test"]["single_draw_bits_per_dim"]
                        assert metrics["test"]["bits_per_dim"] <= single + 0.05
    for path in (
        "results/notebooks/likelihood.ipynb",
        "results/tables/likelihood.csv",
        "results/tables/likelihood.md",
        "results/figures/learning_curves.svg",
        "results/figures/learning_curves.png",
        "results/figures/learning_curves.vl.json",
        "results/variables.yml",
    ):
        assert (project / path).is_file(), path
    table = (project / "results/tables/likelihood.csv").read_text()
    assert "nan" not in table.lower()
    baselines = sum(
        len(json.loads((project / f"results/{d}/baselines.json").read_text())["baselines"]) for d in config["datasets"]
    )
    trained = sum(
        d not in (block.get("left_out") or {}) for d in config["datasets"] for block in config["models"].values()
    )
    assert len(table.strip().splitlines()) == 1 + trained + baselines


def test_staged_site_passes_the_static_quarto_check(project):
    site = project / "results/site-src"
    assert check_project(site) == []
    assert (site / "results/tables/likelihood.md").is_file()
    assert (site / "_variables.yml").is_file()


def test_nothing_to_do_on_a_finished_study(project):
    assert planned_jobs(project) == {}


def assert_downstream_of_runs(plan: dict[str, int], runs: int, code_edited: bool) -> None:
    """Exactly ``runs`` trainings and evaluations, their probes, the model's speed benchmark and
    the summary of the benchmark, each analysis once, the site; the model's code digests when its
    code was edited, none otherwise."""
    assert plan.pop("train") == runs and plan.pop("evaluate") == runs, plan
    assert (plan.pop("code_digest", 0) >= 1) == code_edited, plan
    assert plan.pop("speed_benchmark") == 1 and plan.pop("speed_summary") == 1, plan
    probe_jobs = sum(plan.pop(rule) for rule in [r for r in plan if r.startswith("probe_")])
    assert probe_jobs <= runs, plan  # one job per run computes all of its probes
    assert plan.pop("variables") == 1 and plan.pop("stage_site") == 1, plan
    assert plan.pop("render_site", 0) == int(quarto_available()), plan  # where Quarto is installed, the render
    assert plan.pop("reproduce_page") == 1 and plan.pop("environment_page") == 1, plan
    assert plan.pop("design_page") == 1, plan  # it reads the speed benchmark (a left-out model's measured step)
    assert plan and all(rule.endswith("_analysis") and count == 1 for rule, count in plan.items()), plan


def test_editing_one_model_reruns_only_that_model(project, tmp_path):
    module = project / "src/vaeflow/models/realnvp.py"
    original = module.read_text()
    try:
        module.write_text(original + "\n# an edit\n")
        plan, models = plan_of(snakemake(project, "-n", *SMOKE).stdout)
    finally:
        module.write_text(original)
        os.utime(module, (0, 0))  # older than every output again
    runs = 4 * 1  # datasets x seeds in the smoke config
    assert_downstream_of_runs(plan, runs, code_edited=True)
    assert models == {"realnvp"}


def test_a_new_flow_is_one_module_one_config_block_and_its_test(project, tmp_path):
    """docs/adding.md's way, with its worked example (tests/adding/: NICE): the model's module, its
    block in the study's config and its test, and no other file. In a copy of the finished smoke
    study, the new model's test passes, and the study trains, evaluates, probes, benchmarks and
    reports it, rerunning nothing of the other models."""
    example = Path(__file__).parent / "adding"
    copy = tmp_path / "project"
    shutil.copytree(project, copy, symlinks=True)
    before = _tree(copy)
    shutil.copy2(example / "nice.py", copy / "src/vaeflow/models/nice.py")
    (copy / "tests").mkdir(exist_ok=True)
    shutil.copy2(example / "test_nice.py", copy / "tests/test_nice.py")
    config = copy / "config/smoke.yaml"
    config.write_text(
        config.read_text().replace("\nmodels:\n", "\nmodels:\n" + (example / "config_block.yaml").read_text(), 1)
    )
    changed = {path for path, digest in _tree(copy).items() if before.get(path) != digest}
    assert changed == {"src/vaeflow/models/nice.py", "tests/test_nice.py", "config/smoke.yaml"}
    assert "nice" in yaml.safe_load(config.read_text())["models"]

    # its own test, in the copy
    env = {**os.environ, "PYTHONPATH": str(copy / "src")}
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_nice.py"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0 and "2 passed" in tested.stdout, tested.stdout + tested.stderr

    plan, models = plan_of(snakemake(copy, "-n", *SMOKE).stdout)
    assert_downstream_of_runs(plan, 4 * 1, code_edited=True)  # its runs: 4 datasets x 1 seed
    assert models == {"nice"}
    proc = snakemake(copy, "--cores", "2", *SMOKE)
    assert "workflow finished in" in proc.stdout + proc.stderr

    for dataset in ("digits", "mnist", "textures", "toy2d"):
        run = copy / f"results/{dataset}/nice/seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["exact"] is True and math.isfinite(metrics["test"]["bits_per_dim"]), metrics
        probes = {p.stem for p in (run / "probes").glob("*.npz")}
        expected = {"latents"} if dataset == "toy2d" else {"high_frequency", "anomaly", "latents"}
        assert probes == expected, (dataset, probes)
    speed = json.loads((copy / "results/benchmarks/speed.json").read_text())
    (row,) = [r for r in speed["results"] if r["model"] == "nice"]
    assert row["dataset"] == "toy2d" and row["peer"] is None and row["ours"]["step_time_s"] > 0
    # reported: a row of the tables the site shows, and in the variables the site quotes, under its label
    k = yaml.safe_load(config.read_text())["evaluation"]["iwae_k"]  # on images its IW-uniform-k (evaluate.py)
    assert f"\n| nice | iw-uniform-{k} |" in (copy / "results/tables/likelihood.md").read_text()
    assert "\n| nice |" in (copy / "results/site-src/results/tables/likelihood.md").read_text()
    variables = yaml.safe_load((copy / "results/variables.yml").read_text())
    assert variables["cost"]["digits"]["nice"]["parameters"]
    assert "NICE" in json.dumps(variables["likelihood"]["compare"])


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file of a project copy but its results and Snakemake's state, by relative path."""
    skip = ("results", ".snakemake")
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).parts[0] not in skip and "__pycache__" not in path.parts
    }


def test_a_touched_but_unchanged_source_file_reruns_nothing(project):
    """Jobs depend on code-digest files (rule code_digest), not on each source file; a newer mtime
    with the same content is no change (Snakemake compares the checksum it recorded), so not even
    the digests rerun."""
    module = project / "src/vaeflow/models/realnvp.py"
    stat = module.stat()
    try:
        os.utime(module)
        proc = snakemake(project, "--cores", "2", *SMOKE)
        ran = set(re.findall(r"^(?:local)?rule (\w+):", proc.stderr + proc.stdout, re.M))
        assert ran == set(), ran
        assert planned_jobs(project) == {}
    finally:
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_only_the_code_digests_declare_source_files(project):
    """Every other job declares its code as one digest file (a few dozen files for the scheduler
    to track instead of ~15 per job), and each digest lists exactly the files it hashes."""
    out = snakemake(project, "-n", "--forceall", *SMOKE).stdout
    for job in out.split("\n\n"):
        rule = re.search(r"^(?:local)?rule (\w+):", job, re.M)
        inputs = re.search(r"^\s+input: (.*)$", job, re.M)
        if rule and inputs and rule.group(1) != "code_digest":
            assert "src/vaeflow" not in inputs.group(1), (rule.group(1), inputs.group(1))
    digests = sorted((project / "results/code").glob("*.sha256"))
    assert digests
    import hashlib

    for digest in digests:
        for line in digest.read_text().splitlines():
            sha, path = line.split("  ")
            assert hashlib.sha256((project / path).read_bytes()).hexdigest() == sha, (digest.name, path)


def test_editing_one_model_config_block_reruns_only_that_model(project):
    config = yaml.safe_load((project / "config/smoke.yaml").read_text())
    config["models"]["vae"]["options"]["hidden"] = 33
    (project / "config/edited.yaml").write_text(yaml.safe_dump(config))
    plan, models = plan_of(snakemake(project, "-n", "--configfile", "config/edited.yaml").stdout)
    # vae_iaf subclasses the VAE but has its own config block: it is not rerun
    assert_downstream_of_runs(plan, 4, code_edited=False)
    assert models == {"vae"}


def test_changing_one_probes_settings_recomputes_only_that_probe(project):
    """The probe jobs (one per run) rerun: each recomputes the changed probe and restores the others
    from their memos byte for byte, so the other analyses' tables come out unchanged. (Snakemake
    plans the whole graph before any job runs, so it still reruns the other analyses' notebooks: a
    few seconds each, against the probes' model work that the memos save.)"""
    config = yaml.safe_load((project / "config/smoke.yaml").read_text())
    config["analyses"]["latents"]["max_test"] = config["analyses"]["latents"]["max_test"] - 10
    (project / "config/probe_edit.yaml").write_text(yaml.safe_dump(config))
    untouched = {
        p: p.read_bytes()
        for p in (project / "results/tables").glob("*.csv")
        if not p.name.startswith(("latents", "cost"))
    }  # cost tables hold wall times
    probes = {p: p.read_bytes() for p in (project / "results").glob("*/*/seed*/probes/*.npz")}
    try:
        proc = snakemake(project, "--cores", "2", "--configfile", "config/probe_edit.yaml")
        ran = Counter(re.findall(r"^(?:local)?rule (\w+):", proc.stderr + proc.stdout, re.M))
        runs = sum(n for rule, n in ran.items() if rule.startswith("probe_"))
        assert runs == len({p.parent for p in probes}), ran  # every run's probe job, once
        logs = [log.read_text() for log in (project / "results/logs/probe").rglob("*.log")]
        assert sum("probe latents: computed" in log for log in logs) == runs
        assert not any(
            "latents: restored" in log or ": computed" in log.replace("latents: computed", "") for log in logs
        )
        for path, before in probes.items():
            assert (path.read_bytes() == before) == (path.name != "latents.npz"), path
        for path, before in untouched.items():
            assert path.read_bytes() == before, path
    finally:
        snakemake(project, "--cores", "2", *SMOKE)  # the study as the other tests expect it
    assert planned_jobs(project) == {}


def test_editing_the_notebook_reruns_the_analysis_and_the_site(project):
    notebook = project / "workflow/notebooks/likelihood.ipynb"
    original, stat = notebook.read_text(), notebook.stat()
    try:
        os.utime(notebook)  # a newer mtime with the same content is not a change (Snakemake checks content)
        assert planned_jobs(project) == {}
        notebook.write_text(original.replace("# Likelihood:", "# Likelihood (edited):", 1))
        plan = planned_jobs(project)
    finally:
        notebook.write_text(original)
        os.utime(notebook, (stat.st_atime, stat.st_mtime))
    assert plan == {
        "likelihood_analysis": 1,
        "variables": 1,
        "reproduce_page": 1,
        "environment_page": 1,
        "stage_site": 1,
    } | ({"render_site": 1} if quarto_available() else {})


def test_a_changed_notebook_output_restages_the_site_and_an_unchanged_one_does_not(project):
    """The site's inputs are exactly what it shows: a table it shows re-stages it (and its
    Reproduce entry); a notebook output it does not show (a figure's PNG: the site draws the chart
    and falls back to the SVG; a table's CSV is shown, as its download link) changes nothing downstream."""
    shown, unshown = project / "results/tables/likelihood.md", project / "results/figures/learning_curves.png"
    originals = {path: (path.read_bytes(), path.stat()) for path in (shown, unshown)}
    try:
        unshown.write_bytes(originals[unshown][0] + b"\n")
        assert planned_jobs(project) == {}
        shown.write_bytes(originals[shown][0] + b"\n")
        assert planned_jobs(project) == {"reproduce_page": 1, "stage_site": 1} | (
            {"render_site": 1} if quarto_available() else {}
        )
    finally:
        for path, (data, stat) in originals.items():
            path.write_bytes(data)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(project) == {}


def test_the_reproduce_command_of_a_figure_rebuilds_exactly_that_figure(project):
    """The command the Reproduce page gives for a figure reruns that one job, and the figure
    it writes is byte-identical to the one on the site."""
    import hashlib
    import shlex

    page = (project / "results/site-src/results/provenance/reproduce.md").read_text()
    figure = "results/figures/learning_curves.svg"
    entry = page.split("{#figure-learning_curves}", 1)[1]
    command = re.search(r"```bash\n(snakemake [^\n]+)\n```", entry).group(1)
    assert command == f"snakemake --cores 2 {figure} --forcerun likelihood_analysis --configfile config/smoke.yaml"
    args = shlex.split(command)[1:]
    assert planned_jobs(project, *args, config=[]) == {"likelihood_analysis": 1}
    before = hashlib.sha256((project / figure).read_bytes()).hexdigest()
    snakemake(project, *args)
    assert hashlib.sha256((project / figure).read_bytes()).hexdigest() == before
    snakemake(project, "--cores", "2", *SMOKE)  # bring the site up to date again for the tests after this one
    assert planned_jobs(project) == {}


def test_the_provenance_pages_cover_every_table_and_figure(project):
    import importlib

    reproduce = (project / "results/provenance/reproduce.md").read_text()
    for analysis in ("likelihood", "high_frequency", "anomaly", "cost", "latents"):
        module = importlib.import_module(f"vaeflow.analysis.{analysis}")
        for stem in module.TABLES:
            assert f"{{#table-{stem}}}" in reproduce, stem
        for stem in module.FIGURES:
            assert f"{{#figure-{stem}}}" in reproduce, stem
        assert f"## Rule `{analysis}_analysis`" in reproduce
    environment = (project / "results/provenance/environment.md").read_text()
    assert "| `torch` | 2.13.0" in environment and "**Training seeds:** 0" in environment
    assert re.search(r"\| probe_\w+ \| \d+ \| \d+ \|", environment)


def test_rebuild_one_result_by_its_path(project):
    target = "results/mnist/realnvp/seed0/metrics.json"
    plan = planned_jobs(project, target, "--forcerun", "train")
    assert plan == {"train": 1, "evaluate": 1}


def test_a_failed_forced_retrain_leaves_no_stale_result_and_a_plain_rerun_repairs_it(project):
    """A forced retrain that fails (here: another trainer holds the run, as one orphaned by a
    killed Snakemake master would) removes the run's evaluation and probes before it trains, so
    the old metrics never pass for current and a plain rerun of the metrics rebuilds them."""
    import subprocess
    import sys

    run = project / "results/digits/vae/seed0"
    assert (run / "metrics.json").is_file() and (run / "probes").is_dir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib, time\nfrom vaeflow.training.engine import run_lock\n"
            "with run_lock(pathlib.Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(300)\n",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(project / "src")},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = snakemake(
            project,
            "--cores",
            "1",
            f"{run.relative_to(project)}/metrics.json",
            "--forcerun",
            "train",
            *SMOKE,
            check=False,
        )
        assert proc.returncode != 0
        log = (project / "results/logs/train/digits/vae/seed0.log").read_text()
        assert f"pid {holder.pid}" in log and "another trainer is already training" in log
    finally:
        holder.kill()
        holder.wait()
    for name in ("checkpoint.pt", "metrics.json", "samples.npz", "test_scores.npz", "probes"):
        assert not (run / name).exists(), name
    assert planned_jobs(project, f"{run.relative_to(project)}/metrics.json") == {"train": 1, "evaluate": 1}
    snakemake(project, "--cores", "2", *SMOKE)  # bring the study up to date for the tests after this one
    assert planned_jobs(project) == {}


def test_an_unwritable_results_folder_stops_the_run_before_anything_is_removed(project):
    """A folder a planned job writes to is read-only: one message names it, and no output of any
    job (here the analysis's figures, in a writable sibling folder) has been removed."""
    import subprocess

    from vaeflow.analysis import likelihood

    tables, figure = project / "results/tables", project / "results/figures/learning_curves.svg"
    # the analysis's tables are gone (so Snakemake's own check of write-protected existing outputs
    # has nothing to say) and asked for, so the job is planned; its figures are still in place
    saved = {p: p.read_bytes() for stem in likelihood.TABLES for p in tables.glob(f"{stem}.*")}
    for path in saved:
        path.unlink()
    # a read-only view of the folder (chmod does not stop root, a read-only bind mount does)
    mounted = subprocess.run(["mount", "--bind", str(tables), str(tables)], capture_output=True).returncode == 0
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(tables)], check=True)
    else:
        tables.chmod(0o555)
    try:
        if os.access(tables, os.W_OK):
            pytest.skip("cannot make a folder unwritable here (root without mount)")
        proc = snakemake(project, "--cores", "1", "results/tables/likelihood.md", *SMOKE, check=False)
    finally:
        if mounted:
            subprocess.run(["umount", str(tables)], check=True)
        else:
            tables.chmod(0o755)
        for path, data in saved.items():
            path.write_bytes(data)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cannot write results" in output and "results/tables" in output and "Nothing was run or removed" in output
    assert "Traceback" not in output
    assert figure.is_file(), "a sibling output was removed"
    snakemake(project, "--cores", "2", *SMOKE)
    assert planned_jobs(project) == {}


def test_lint_reports_nothing(project):
    proc = snakemake(project, "--lint", *SMOKE, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_bad_config_fails_with_one_message_before_any_job(project):
    config = yaml.safe_load((project / "config/smoke.yaml").read_text())
    config["models"]["vea"] = config["models"].pop("vae")
    (project / "config/bad.yaml").write_text(yaml.safe_dump(config))
    before = sorted(p for p in (project / "results").rglob("*"))
    proc = snakemake(project, "-n", "--configfile", "config/bad.yaml", check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "at 'models'" in output and "'vea'" in output
    assert sorted(p for p in (project / "results").rglob("*")) == before


@pytest.mark.skipif(quarto_available(), reason="Quarto is installed here, so the site target renders")
def test_site_target_without_quarto_fails_with_the_install_message(project):
    proc = snakemake(project, "results/site", "--cores", "1", *SMOKE, check=False)
    assert proc.returncode != 0
    assert "Quarto is not installed" in proc.stdout + proc.stderr
    assert not (project / "results/site").exists()
