"""Results archives (vaeflow.archive): a round trip on the smoke study, and every fault refused untouched.

The fault tests build small archives of a made-up study in a copy of the project (fast); the round trip
exports the finished smoke study, imports it into a fresh copy of the project and runs Snakemake there.
"""

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from smoke import copy_project, run_guarded, snakemake
from vaeflow import archive
from vaeflow.archive import (
    ArchiveError,
    Entry,
    current_digest,
    import_results,
    manifest_for,
    plan_counts,
    record_name,
    record_output,
    write_archive,
)
from vaeflow.cli import main
from vaeflow.site.quarto import quarto_available
from vaeflow.site.reproduce import imported_from

CONFIG = ["config/smoke.yaml"]
CODESET = "models.vae+training.engine"
RUN = "results/toy2d/vae/seed0"


# --------------------------------------------------------------------------- a made-up study and its archive


def _write_digest(root: Path, codeset: str) -> str:
    """The code digest this checkout's sources give (vaeflow.hashing.code_digest's format)."""
    text = "".join(f"{sha}  {path}\n" for path, sha in current_digest(root, codeset).items())
    path = f"results/code/{codeset}.sha256"
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)
    return path


def _record(root: Path, output: str, rule: str, inputs: list[str], job_hash: int) -> None:
    checksums = {p: "sha256:" + hashlib.sha256((root / p).read_bytes()).hexdigest() for p in inputs}
    data = {
        "rule": rule,
        "input": inputs,
        "input_checksums": checksums,
        "job_hash": job_hash,
        "starttime": 1.0,
        "endtime": 2.0,
        "log": [f"results/logs/{rule}.log"],
        "params": [],
        "record_format_version": 6,
    }
    target = root / ".snakemake/metadata" / record_name(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data))


def made_up_study(root: Path) -> list[Entry]:
    """A prepared dataset, one trained and evaluated run, its code digest and a speed benchmark (which reads a
    source file directly), with Snakemake's records."""
    rng = np.random.default_rng(0)
    digest = _write_digest(root, CODESET)
    files = {
        "results/data/toy2d.npz": ("prepare_data", []),
        "results/data/toy2d.json": ("prepare_data", []),
        f"{RUN}/checkpoint.pt": ("train", ["results/data/toy2d.npz", digest]),
        f"{RUN}/train.json": ("train", ["results/data/toy2d.npz", digest]),
        f"{RUN}/metrics.json": ("evaluate", [f"{RUN}/checkpoint.pt", digest]),
        "results/benchmarks/speed/vae.json": ("speed_benchmark", ["results/data/toy2d.npz", "benchmarks/speed.py"]),
    }
    for path in files:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(rng.bytes(2000) if path.endswith((".npz", ".pt")) else b'{"device": "cpu"}\n')
    entries = [
        Entry(digest, "output", "code_digest", digest),
        Entry(f".snakemake/metadata/{record_name(digest)}", "record", "code_digest", digest),
    ]
    _record(root, digest, "code_digest", list(current_digest(root, CODESET)), 1)
    for i, (path, (rule, inputs)) in enumerate(files.items()):
        _record(root, path, rule, inputs, 10 + i)
        entries += [
            Entry(path, "output", rule, path),
            Entry(f".snakemake/metadata/{record_name(path)}", "record", rule, path),
        ]
    return entries


@pytest.fixture(scope="module")
def source(root, tmp_path_factory):
    """A copy of the project holding the made-up study, and the manifest of an archive of it."""
    project = copy_project(root, tmp_path_factory.mktemp("source") / "project")
    entries = made_up_study(project)
    manifest = manifest_for(project, entries, configfiles=CONFIG, stage="analyses", include=[])
    return project, manifest


@pytest.fixture(scope="module")
def good(source, tmp_path_factory):
    project, manifest = source
    path = tmp_path_factory.mktemp("archives") / "study.tar.gz"
    write_archive(path, project, manifest)
    return path


@pytest.fixture()
def target(root, tmp_path):
    """A fresh copy of the project with one result of its own, which no refused import may touch."""
    project = copy_project(root, tmp_path / "fresh")
    (project / "results").mkdir()
    (project / "results/own.txt").write_text("mine\n")
    (project / ".snakemake/metadata").mkdir(parents=True)
    return project


def snapshot(project: Path) -> dict[str, bytes]:
    """Every file of the project outside its sources (results/, .snakemake/, anything else at the top)."""
    return {
        p.relative_to(project).as_posix(): p.read_bytes()
        for p in sorted(project.rglob("*"))
        if p.is_file() and p.relative_to(project).parts[0] not in ("src", "workflow", "report", "benchmarks", "config")
    }


def refused(project: Path, archive_path: Path, match: str, **kwargs) -> str:
    """Import ``archive_path`` into ``project``, expect an ArchiveError matching ``match``, and check that
    nothing was written (no staging folder left either); returns the message."""
    before = snapshot(project)
    entries = sorted(os.listdir(project))
    with pytest.raises(ArchiveError, match=match) as caught:
        import_results(project, archive_path, configfiles=CONFIG, log=lambda line: None, **kwargs)
    assert snapshot(project) == before
    assert sorted(os.listdir(project)) == entries, "a staging folder was left behind"
    assert "Nothing was written" in str(caught.value) or "nothing was written" in str(caught.value)
    return str(caught.value)


def rewrite(good_path: Path, dest: Path, change=None, extra: list[tuple[tarfile.TarInfo, bytes]] = ()) -> Path:
    """A copy of an archive (uncompressed), its members passed through ``change(info, data) -> (info, data)``."""
    with tarfile.open(good_path) as src, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for info in src.getmembers():
            data = src.extractfile(info).read()
            if change:
                info, data = change(info, data)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        for info, data in extra:
            out.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return dest


def with_manifest(good_path: Path, dest: Path, edit) -> Path:
    """A copy of an archive whose manifest ``edit(manifest)`` changed (other members as they were)."""

    def change(info, data):
        if info.name == "MANIFEST.json":
            manifest = json.loads(data)
            edit(manifest)
            data = json.dumps(manifest).encode()
        return info, data

    return rewrite(good_path, dest, change)


# --------------------------------------------------------------------------- an intact archive


def test_an_intact_archive_restores_every_file_record_and_time(good, source, target):
    project, manifest = source
    lines = []
    record = import_results(target, good, configfiles=CONFIG, log=lines.append)
    shifts = set()
    for item in manifest["files"]:
        here = target / item["path"]
        assert here.read_bytes() == (project / item["path"]).read_bytes(), item["path"]
        shifts.add(round(here.stat().st_mtime - item["mtime"], 4))
    # the files keep their order in time, all older than the sources the imported jobs read (archive.time_shift)
    assert len(shifts) == 1 and shifts.pop() <= 0
    newest = max((target / item["path"]).stat().st_mtime for item in manifest["files"])
    assert all(newest < (target / p).stat().st_mtime for p in manifest["code"]["sources"])
    assert (target / "results/own.txt").read_text() == "mine\n"
    assert json.loads((target / "results/imported.json").read_text()) == record
    assert record["archive"] == "study.tar.gz" and record["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert record["stage"] == "analyses" and not record["forced"] and f"{RUN}/checkpoint.pt" in record["files"]
    assert "no training, evaluation or probe job" in lines[-1]
    assert not [p for p in os.listdir(target) if p.startswith(".vaeflow-import")]
    # importing it again changes nothing and needs no --overwrite
    before = snapshot(target)
    import_results(target, good, configfiles=CONFIG, log=lambda line: None)
    assert {k: v for k, v in snapshot(target).items() if k != "results/imported.json"} == {
        k: v for k, v in before.items() if k != "results/imported.json"
    }


def test_the_manifest_records_code_config_versions_and_hardware(source):
    _, manifest = source
    assert manifest["format"] == "vaeflow-results" and manifest["stage"] == "analyses"
    digest = f"results/code/{CODESET}.sha256"
    assert manifest["code"]["rules"]["train"] == {"jobs": 2, "code": [digest]}
    assert manifest["code"]["rules"]["speed_benchmark"] == {"jobs": 1, "code": ["benchmarks/speed.py"]}
    assert manifest["code"]["rules"]["code_digest"]["code"] == sorted(
        p for p in manifest["code"]["sources"] if p.startswith("src/")
    )
    assert "src/vaeflow/models/vae.py" in manifest["code"]["sources"]
    assert manifest["config"]["files"] == CONFIG and len(manifest["config"]["hash"]) == 16
    assert manifest["config"]["settings"]["models"]["vae"]["steps"]["toy2d"] == 30
    assert manifest["software"]["exported_with"]["torch"].startswith("2.13.0")
    assert manifest["hardware"]["runs"]["device"] == {"cpu": 1} and "CPU" in manifest["hardware"]["exported_on"]
    sizes = {item["path"]: item["size"] for item in manifest["files"]}
    assert sizes[f"{RUN}/checkpoint.pt"] == 2000


def test_check_reads_everything_and_writes_nothing(good, target):
    before = snapshot(target)
    lines = []
    assert import_results(target, good, configfiles=CONFIG, check=True, log=lines.append) == {}
    assert snapshot(target) == before and "intact" in lines[0] and "nothing was written" in lines[0]


def test_a_record_name_round_trips_even_past_the_file_name_limit():
    for path in ("results/data/toy2d.npz", "results/" + "x" * 400 + ".npz"):
        name = record_name(path)
        assert record_output(name) == path
        assert all(len(part) <= 255 for part in name.split("/"))
    assert record_name("results/data/toy2d.npz") == base64.urlsafe_b64encode(b"results/data/toy2d.npz").decode()
    assert record_output("not-base64!") is None and record_output("@abc/def") is None


# --------------------------------------------------------------------------- faults: each refused, nothing written


def test_a_tampered_member_is_refused(good, target, tmp_path):
    def change(info, data):
        return info, (bytes([data[0] ^ 1]) + data[1:]) if info.name == f"{RUN}/checkpoint.pt" else data

    message = refused(target, rewrite(good, tmp_path / "tampered.tar", change), "does not match its manifest")
    assert f"{RUN}/checkpoint.pt" in message and "altered or damaged" in message


def test_a_truncated_archive_is_refused(good, target, tmp_path):
    data = good.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    message = refused(target, tmp_path / "cut.tar.gz", "truncated or damaged")
    assert "sha256" in message
    # cut at a member boundary of an uncompressed archive: the manifest names what is missing
    plain = rewrite(good, tmp_path / "plain.tar")
    with tarfile.open(plain) as tar:
        cut = tar.getmembers()[3].offset
    (tmp_path / "cut.tar").write_bytes(plain.read_bytes()[:cut])
    refused(target, tmp_path / "cut.tar", "it ends after 2 of the 1[0-9] files its manifest lists")


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../evil.txt", "climb out"),
        ("results/../../evil.txt", "climb out"),
        ("/tmp/vaeflow-evil.txt", "absolute path"),
        ("src/vaeflow/evil.py", "outside results/"),
        (".snakemake/metadata/" + record_name("results/elsewhere.txt"), "not the record of the output it names"),
    ],
)
def test_a_manifest_path_outside_results_is_refused(good, target, tmp_path, name, reason):
    def edit(manifest):
        manifest["files"].append(
            {
                "path": name,
                "kind": "record" if name.startswith(".snake") else "output",
                "output": "results/x",
                "sha256": "0" * 64,
                "size": 1,
                "mtime": 1.0,
            }
        )

    message = refused(target, with_manifest(good, tmp_path / "bad.tar", edit), reason)
    assert repr(name) in message
    assert not (target.parent / "evil.txt").exists() and not Path("/tmp/vaeflow-evil.txt").exists()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, 0 if kind != tarfile.REGTYPE else 4
    return info


@pytest.mark.parametrize(
    "info, reason",
    [
        (_member("../../evil.txt"), "climb out"),
        (_member("/tmp/vaeflow-evil.txt"), "absolute path"),
        (_member("results/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link to '/etc/passwd'"),
        (_member("results/hard", tarfile.LNKTYPE, "results/data/toy2d.npz"), "hard link"),
        (_member("results/dev", tarfile.CHRTYPE), "a device"),
        (_member("results/unlisted.txt"), "does not list"),
    ],
)
def test_a_member_outside_results_a_link_or_an_unlisted_file_is_refused(good, target, tmp_path, info, reason):
    crafted = rewrite(good, tmp_path / "crafted.tar", extra=[(info, b"evil")])
    message = refused(target, crafted, reason)
    assert repr(info.name) in message
    assert not (target.parent / "evil.txt").exists() and not Path("/tmp/vaeflow-evil.txt").exists()


def test_an_archive_of_other_code_is_refused_naming_the_code_and_its_rules(root, tmp_path, good):
    project = copy_project(root, tmp_path / "edited")
    for path in ("src/vaeflow/models/vae.py", "benchmarks/speed.py", "workflow/rules/train.smk"):
        (project / path).write_text((project / path).read_text() + "\n# edited after the archive was made\n")
    message = refused(project, good, "other code or configuration")
    assert f"results/code/{CODESET}.sha256 (rules evaluate, train): src/vaeflow/models/vae.py changed" in message
    assert "benchmarks/speed.py (rules speed_benchmark): changed" in message
    assert "workflow/rules/train.smk: changed (a rule's command or parameters may differ" in message
    # code that only a code digest's job read (here: none of the archived jobs') is not a difference
    assert "(rules code_digest)" not in message
    assert "git checkout" in message and "--force" in message


def test_forced_other_code_is_imported_and_says_what_reruns(root, tmp_path, good, monkeypatch):
    project = copy_project(root, tmp_path / "edited")
    model = project / "src/vaeflow/models/vae.py"
    model.write_text(model.read_text() + "\n# edited after the archive was made\n")
    monkeypatch.setattr(archive, "dry_run_plan", lambda root, configfiles: {"train": 1, "evaluate": 1})
    lines = []
    record = import_results(project, good, configfiles=CONFIG, force=True, log=lines.append)
    assert record["forced"] and any("src/vaeflow/models/vae.py changed" in d for d in record["differences"])
    assert lines[-1] == "snakemake -n plans: evaluate x1, train x1"
    assert (project / f"{RUN}/checkpoint.pt").is_file()


def test_an_archive_of_another_configuration_is_refused_naming_the_keys(good, target):
    before = snapshot(target)
    with pytest.raises(ArchiveError, match="configuration differs") as caught:
        import_results(target, good, configfiles=["config/config.yaml"], log=lambda line: None)
    assert snapshot(target) == before
    message = str(caught.value)
    assert re.search(r"at \d+ keys:\n  analyses\.\S+: .+ in the archive's, .+ here", message), message
    assert "--configfile config/smoke.yaml" in message


def test_results_with_other_bytes_are_not_replaced_without_overwrite(good, target):
    (target / RUN).mkdir(parents=True)
    (target / f"{RUN}/metrics.json").write_text("{}\n")
    refused(target, good, r"already holds 1 files .*results/toy2d/vae/seed0/metrics.json.*--overwrite")
    import_results(target, good, configfiles=CONFIG, overwrite=True, log=lambda line: None)
    assert (target / f"{RUN}/metrics.json").read_text() == '{"device": "cpu"}\n'


def test_a_manifest_that_is_not_ours_or_a_file_that_is_not_an_archive_is_refused(good, target, tmp_path):
    refused(
        target,
        with_manifest(good, tmp_path / "other.tar", lambda m: m.update(format="other")),
        "not a vaeflow results archive",
    )
    refused(
        target, with_manifest(good, tmp_path / "lacking.tar", lambda m: m.pop("code")), "lacks what an export writes"
    )
    (tmp_path / "text.tar").write_text("hello\n")
    refused(target, tmp_path / "text.tar", "truncated or damaged|not a vaeflow")


def test_zstd_without_its_package_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # an import of it fails, as where it is not installed
    with pytest.raises(ArchiveError, match=r"needs the zstandard package.*pip install zstandard.*\.tar\.gz"):
        archive.compression(tmp_path / "study.tar.zst")
    with pytest.raises(ArchiveError, match=r"STUDY\.tar, STUDY\.tar\.gz or STUDY\.tar\.zst"):
        archive.compression(tmp_path / "study.zip")


def test_the_command_line_reports_a_refusal_and_exits_non_zero(good, target, tmp_path, capsys, monkeypatch):
    data = good.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[:-100])
    monkeypatch.chdir(target)
    assert main(["import-results", str(tmp_path / "cut.tar.gz"), "--configfile", "config/smoke.yaml"]) == 1
    assert "vaeflow import-results: error:" in capsys.readouterr().err
    assert not (target / "results/imported.json").exists()


def test_the_reproduce_page_names_the_archive_and_what_was_rebuilt_since(good, target):
    assert imported_from(target) == []
    import_results(target, good, configfiles=CONFIG, log=lambda line: None)
    text = "\n".join(imported_from(target))
    sha = hashlib.sha256(good.read_bytes()).hexdigest()
    assert "`study.tar.gz`" in text and f"sha256 `{sha}`" in text and "All 7 of its files are unchanged" in text
    (target / f"{RUN}/metrics.json").write_text("{}\n")
    assert f"1 of its 7 files have been rebuilt here since (e.g. `{RUN}/metrics.json`)" in "".join(
        imported_from(target)
    )


def test_plan_counts_reads_snakemakes_job_stats():
    out = (
        "Job stats:\njob                    count\n-------------------  -------\nall 1\nlikelihood_analysis "
        "1\ntotal 2\n"
    )
    assert plan_counts(out) == {"likelihood_analysis": 1}
    assert plan_counts("Nothing to be done (all requested files are present and up to date).") == {}


# --------------------------------------------------------------------------- the round trip on the smoke study

SMOKE_CONFIG = ["--configfile", "config/smoke.yaml"]
REBUILT = ("analyses", "pages", "rendered")  # the rule groups that may run after an import of the default stage


def vaeflow_cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m vaeflow ARGS`` in ``project``, as a reviewer runs it."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    return run_guarded([sys.executable, "-m", "vaeflow", *args], project, env)


def plan(project: Path, *targets: str) -> dict[str, int]:
    return plan_counts(snakemake(project, *targets, "-n", *SMOKE_CONFIG).stdout)


@pytest.fixture(scope="module")
def exported(smoke_study, tmp_path_factory):
    """The smoke study exported at each stage, and its tables, figures and quoted numbers as they were."""
    out = tmp_path_factory.mktemp("exported")
    for stage in archive.STAGES:
        proc = vaeflow_cli(smoke_study, "export-results", str(out / f"{stage}.tar.gz"), "--stage", stage, *SMOKE_CONFIG)
        assert proc.returncode == 0, proc.stderr
    shown = [p for p in sorted((smoke_study / "results").glob("*/*")) if p.parent.name in ("tables", "figures")]
    reference = {p.relative_to(smoke_study).as_posix(): p.read_bytes() for p in shown if p.suffix != ".png"}
    reference["results/variables.yml"] = (smoke_study / "results/variables.yml").read_bytes()
    return out, reference


@pytest.mark.workflow
def test_a_fresh_clone_rebuilds_the_site_from_an_archive_without_training_and_one_table_byte_for_byte(
    root, exported, tmp_path
):
    out, reference = exported
    archive_path = out / "analyses.tar.gz"
    sha = (out / "analyses.tar.gz.sha256").read_text().split()[0]
    assert sha == hashlib.sha256(archive_path.read_bytes()).hexdigest()
    with tarfile.open(archive_path) as tar:
        names = tar.getnames()
    assert names[0] == "MANIFEST.json"
    assert "results/toy2d/vae/seed0/checkpoint.pt" in names and "results/toy2d/vae/seed0/probes/latents.npz" in names
    assert not [
        n for n in names if n.startswith(("results/tables/", "results/notebooks/", "results/site", "results/logs"))
    ]

    fresh = copy_project(root, tmp_path / "fresh")
    proc = vaeflow_cli(fresh, "import-results", str(archive_path), *SMOKE_CONFIG)
    assert proc.returncode == 0, proc.stderr
    assert "no training, evaluation or probe job" in proc.stdout
    planned = plan(fresh)
    assert planned and all(archive.rule_group(rule) in REBUILT for rule in planned), planned

    snakemake(fresh, "--cores", "2", *SMOKE_CONFIG)
    assert plan(fresh) == {}
    for path, data in reference.items():
        assert (fresh / path).read_bytes() == data, f"{path} differs from the study's own"
    page = (fresh / "results/provenance/reproduce.md").read_text()
    assert f"results archive `analyses.tar.gz` (sha256 `{sha}`)" in page and "of its files are unchanged here" in page

    table = "results/tables/likelihood.csv"
    assert plan(fresh, table, "--forcerun", "likelihood_analysis") == {"likelihood_analysis": 1}
    before = (fresh / table).stat().st_mtime_ns
    snakemake(fresh, "--cores", "2", table, "--forcerun", "likelihood_analysis", *SMOKE_CONFIG)
    assert (fresh / table).stat().st_mtime_ns != before and (fresh / table).read_bytes() == reference[table]


@pytest.mark.workflow
@pytest.mark.parametrize(
    "stage, may_run",
    [
        ("evaluate", ("runs", *REBUILT)),
        ("site", ("pages", "rendered")),
        ("render", ("rendered",)),
    ],
)
def test_after_an_import_snakemake_plans_only_the_stage_and_what_follows(root, exported, tmp_path, stage, may_run):
    out, _ = exported
    fresh = copy_project(root, tmp_path / "fresh")
    proc = vaeflow_cli(fresh, "import-results", str(out / f"{stage}.tar.gz"), *SMOKE_CONFIG)
    assert proc.returncode == 0, proc.stderr
    planned = plan(fresh)
    assert all(archive.rule_group(rule) in may_run for rule in planned), planned
    if stage == "evaluate":
        runs = len(list((fresh / "results").glob("*/*/seed*/checkpoint.pt")))
        assert planned["evaluate"] == runs > 0 and any(rule.startswith("probe_") for rule in planned), planned
    elif stage == "render":
        assert planned == ({"render_site": 1} if quarto_available() else {})


@pytest.mark.workflow
def test_an_archive_of_other_code_is_refused_and_forced_says_what_reruns(root, exported, tmp_path):
    out, _ = exported
    fresh = copy_project(root, tmp_path / "fresh")
    model = fresh / "src/vaeflow/models/glow.py"
    model.write_text(model.read_text() + "\n# edited after the archive was made\n")
    proc = vaeflow_cli(fresh, "import-results", str(out / "analyses.tar.gz"), *SMOKE_CONFIG)
    assert proc.returncode == 1 and not (fresh / "results").exists()
    assert re.search(
        r"results/code/models\.glow\+\S+\.sha256 \(rules [^)]*train[^)]*\): src/vaeflow/models/glow\.py "
        r"changed",
        proc.stderr,
    ), proc.stderr
    proc = vaeflow_cli(fresh, "import-results", str(out / "analyses.tar.gz"), "--force", *SMOKE_CONFIG)
    assert proc.returncode == 0, proc.stderr
    reruns = dict(re.findall(r"(\w+) x(\d+)", proc.stdout.split("snakemake -n plans:")[1]))
    runs = sum(1 for p in (fresh / "results").glob("*/glow/seed0/checkpoint.pt"))
    assert runs == 4 and reruns["train"] == str(runs) and reruns["evaluate"] == str(runs)
    assert "prepare_data" not in reruns
