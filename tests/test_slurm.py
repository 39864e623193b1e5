"""The smoke study on a real SLURM scheduler (`snakemake --executor slurm`) agrees with a local run.

A one-node cluster (munged, slurmctld, slurmd from Debian's packages; configuration in
tests/slurm/slurm.conf.in) runs on this machine for the length of the module, and the
study is submitted through the user's profile (profiles/slurm) plus the test profile
(tests/slurm/profile: squeue for job states, as the cluster has no slurmdbd). Every rule
that is not local must have gone through sbatch, and every number must match the local
smoke study. Skipped, with the reason, where SLURM cannot be installed or started.
"""

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slurm_cluster import SYSTEM_CONF, alive, one_node_cluster, unavailable
from smoke import SMOKE, copy_project, snakemake

pytestmark = pytest.mark.slurm

REASON = unavailable()
# Values of a run that differ from machine to machine or run to run (timings, memory, where it ran).
UNSTABLE_KEY = re.compile(r"time|seconds|_s$|per_s|throughput|mib|memory|rss|host|date|versions|python|cuda")
# Each job holds a CPU only while it runs: a slot per CPU kept the node half idle while jobs
# started and stopped (measured CPU load 0.8 of 2), so the test node offers 3 slots per core.
SLOTS_PER_CORE = 3


@pytest.fixture(scope="module")
def slurm_run(root, tmp_path_factory):
    if REASON:
        pytest.skip(REASON)
    project = copy_project(root, tmp_path_factory.mktemp("slurm") / "project")
    profile = root / "tests" / "slurm" / "profile"
    with one_node_cluster(cpus=SLOTS_PER_CORE * (os.cpu_count() or 1)) as cluster:
        proc = snakemake(project, "--workflow-profile", "profiles/slurm", "--profile", str(profile), *SMOKE)
        plan = snakemake(project, "-n", "--forceall", *SMOKE).stdout  # what a run does, job by job
    return project, proc, cluster, plan


def declared_local(project: Path) -> set[str]:
    """The plainly written rules (``rule name:``) that say ``localrule: True``."""
    rules = set()
    for smk in (project / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.M | re.S):
            if re.search(r"^\s+localrule: True$", body, re.M):
                rules.add(name)
    return rules


def test_the_study_runs_through_sbatch(slurm_run):
    project, proc, _, plan = slurm_run
    out = proc.stdout + proc.stderr
    assert "workflow finished in" in out
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", out)
    # Under an executor, Snakemake heads each job "localrule <name>:" when it runs it beside itself and
    # "rule <name>:" when it hands it to the executor; read that, as the analysis rules are generated
    # in a loop (workflow/rules/analyses.smk) and a rule's name is not always in the source.
    ran_local = set(re.findall(r"^localrule (\w+):$", out, re.M))
    ran_remote = re.findall(r"^rule (\w+):$", out, re.M)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", plan.split("Job stats:", 1)[1], re.M))  # (printed twice)
    analyses = {rule for rule in counts if rule.endswith("_analysis")}
    assert len(analyses) == 5, counts
    assert {"all", "stage_site", "variables", *analyses} <= ran_local
    # the rules that never ran here (the data are already prepared, Quarto may be absent) say so in the source
    assert {"download_data", "stage_site", "render_site"} <= declared_local(project)
    assert not ran_local & {"train", "evaluate", "prepare_data", "speed_benchmark"}, ran_local
    assert {"train", "evaluate", "prepare_data", "speed_benchmark"} <= set(ran_remote)
    # every job of the plan ran, and each one that was not local went through sbatch exactly once
    remote = sum(int(n) for rule, n in counts.items() if rule not in ran_local and rule != "total")
    assert remote > 100 and len(ran_remote) == remote and len(set(submitted)) == remote, (
        remote,
        len(ran_remote),
        len(set(submitted)),
    )
    # every training ran inside a SLURM job: its log under .snakemake/slurm_logs names the job step
    logs = list((project / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"))
    assert len(logs) == plan.count("rule train:")


def test_every_daemon_it_started_is_stopped(slurm_run):
    _, _, cluster, _ = slurm_run
    assert set(cluster.pids) == {"munged", "slurmctld", "slurmd"}
    assert not [name for name, pid in cluster.pids.items() if alive(pid)]
    assert not SYSTEM_CONF.exists() and not cluster.state.exists()


def _stable(value):
    """``value`` without the entries that legitimately differ between runs (timings, hosts)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not UNSTABLE_KEY.search(k.lower())}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _close(a, b, where):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12), (where, a, b)
    else:
        assert a == b, (where, a, b)


def test_results_agree_with_the_local_run(slurm_run, smoke_study):
    project, _, _, _ = slurm_run
    runs = sorted(p.relative_to(smoke_study) for p in (smoke_study / "results").glob("*/*/seed*"))
    assert len(runs) == len(list((project / "results").glob("*/*/seed*"))) and len(runs) >= 31
    compared = 0
    for run in runs:
        local, remote = smoke_study / run, project / run
        local_metrics = _stable(json.loads((local / "metrics.json").read_text()))
        _close(local_metrics, _stable(json.loads((remote / "metrics.json").read_text())), f"{run}/metrics.json")
        for name in [
            "test_scores.npz",
            "samples.npz",
            *sorted(f"probes/{p.name}" for p in (local / "probes").glob("*.npz")),
        ]:
            with np.load(local / name) as a, np.load(remote / name) as b:
                assert a.files == b.files, f"{run}/{name}"
                for key in a.files:
                    if UNSTABLE_KEY.search(key.lower()):
                        continue
                    if np.issubdtype(a[key].dtype, np.number):
                        np.testing.assert_allclose(
                            b[key], a[key], rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=f"{run}/{name}:{key}"
                        )
                    else:
                        np.testing.assert_array_equal(b[key], a[key], err_msg=f"{run}/{name}:{key}")
                    compared += 1
    assert compared > 100
    # so do the tables the site shows, but for their timing columns
    for table in (
        "likelihood",
        "likelihood_iwae",
        "likelihood_gaps",
        "anomaly_auroc",
        "latents_probe",
        "high_frequency_energy",
    ):
        local, remote = (pd.read_csv(p / "results/tables" / f"{table}.csv") for p in (smoke_study, project))
        stable = [c for c in local.columns if not UNSTABLE_KEY.search(c.lower())]
        assert len(stable) > 2 and list(remote.columns) == list(local.columns), table
        pd.testing.assert_frame_equal(remote[stable], local[stable], rtol=1e-9, obj=table)
