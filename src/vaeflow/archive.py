"""A checksummed archive of a study's results, so that a reviewer rebuilds the site, or one figure,
from the trained runs without retraining (``python -m vaeflow export-results`` / ``import-results``).

An archive is a tar file (plain, gzip, or zstd where the ``zstandard`` package is installed) whose
first member, ``MANIFEST.json``, lists every other member with its sha256 and size and records what
made them: the code version, the code digests each rule's jobs ran (``results/code/*.sha256``, see
workflow/rules/code.smk) and every other source file they read, the study configuration and its
hash, the package versions and the hardware. The other members are the results a chosen *stage*
needs (:data:`STAGES`), each an output of a Snakemake job of the study, and Snakemake's records of
those jobs (``.snakemake/metadata/``: each job's input checksums, parameters and command). Restored
with the files, the records make Snakemake see the imported results as up to date: Snakemake reruns
a job whose input is newer than its output only if the input's checksum differs from the recorded
one, so the new file times of a fresh clone rerun nothing.

Import checks everything before it writes anything: every member's path (it must land in
``results/``, or be the Snakemake record of an archived output), type (regular files only) and
sha256, that no member is missing, and that the archive's code and configuration are this
checkout's. It unpacks into a staging folder beside ``results/`` and moves each file into place
only once all of that passed, so a refused archive leaves ``results/`` as it was.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from vaeflow.io import atomic_path, read_json, write_json_atomic, write_text_atomic
from vaeflow.site.reproduce import IMPORTED
from vaeflow.training.superseded import file_sha256

FORMAT = "vaeflow-results"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
RESULTS = "results"
METADATA = ".snakemake/metadata"
INCOMPLETE = ".snakemake/incomplete"
#: written by an import: which archive the results came from (the Reproduce page names it)
IMPORT_RECORD = IMPORTED
#: where a job's code inputs live; any other input outside results/ is data (e.g. resources/)
CODE_DIRS = ("src/", "workflow/", "benchmarks/")
SUFFIXES = {".tar": "", ".tar.gz": "gz", ".tgz": "gz", ".tar.zst": "zst"}
GZIP_LEVEL = 6  # the gzip tool's default: level 9 is several times slower for a percent or two on checkpoints
ZSTD_LEVEL = 3  # zstd's own default: fast, and smaller than gzip's level 6 on these files
MANIFEST_LIMIT = 256 * 2**20  # a manifest larger than this is not one this module wrote

#: The rule groups each stage needs the outputs of (:func:`rule_group`): an archive of a stage lets
#: a reviewer run that stage and what follows it, and nothing before it.
STAGES: dict[str, tuple[str, ...]] = {
    "evaluate": ("code", "data", "train"),
    "analyses": ("code", "data", "train", "runs"),
    "site": ("code", "data", "train", "runs", "analyses"),
    "render": ("code", "data", "train", "runs", "analyses", "pages"),
}
DEFAULT_STAGE = "analyses"
STAGE_HELP = {
    "evaluate": "the prepared data and every run's training outputs: evaluation, probes, analyses and site rerun",
    "analyses": "also every run's evaluation (metrics, test scores, samples), probes, the sanity baselines and the "
    "speed benchmark: the analyses and the site rerun, no training, evaluation or probe job",
    "site": "also the analyses' tables, figures, quoted numbers and executed notebooks: only the site's pages rerun",
    "render": "also the site's provenance pages and the staged site: nothing reruns but Quarto's render",
}
#: what ``--include`` adds: files that are large or regenerable, left out unless asked for
INCLUDES = {
    "logs": "every packed job's log (results/logs/)",
    "memo": "the probes' memos (probes/.memo/: a changed probe setting then recomputes only that probe)",
    "site": "the rendered website (results/site/; with --stage render)",
}
#: what an archive's members are: job outputs, Snakemake's records of them, and what --include adds
KINDS = ("output", "record", "log", "memo")
PAGES = frozenset({"reproduce_page", "environment_page", "design_page", "stage_site"})


class ArchiveError(ValueError):
    """An archive cannot be made or imported; the message says what, where, and what to do."""


# --------------------------------------------------------------------------- what an archive holds


def rule_group(rule: str) -> str:
    """The stage a rule belongs to: ``code``, ``data``, ``train``, ``runs`` (evaluation, probes, baselines,
    the speed benchmark, and any rule not named here), ``analyses``, ``pages`` or ``rendered``."""
    if rule == "code_digest":
        return "code"
    if rule in ("prepare_data", "download_data"):
        return "data"
    if rule == "train":
        return "train"
    if rule.endswith("_analysis") or rule == "variables":
        return "analyses"
    if rule in PAGES:
        return "pages"
    if rule == "render_site":
        return "rendered"
    return "runs"


def record_name(path: str, name_max: int = 255) -> str:
    """Where Snakemake keeps the record of output ``path`` below ``.snakemake/metadata``: its urlsafe
    base64, cut into folders of ``name_max - 1`` characters marked ``@`` when longer than a file name may be
    (snakemake.persistence.file)."""
    b64 = base64.urlsafe_b64encode(path.encode()).decode()
    chunks = [b64[i : i + name_max - 1] for i in range(0, len(b64), name_max - 1)]
    return "/".join(["@" + c for c in chunks[:-1]] + [chunks[-1]])


def record_output(name: str) -> str | None:
    """The output path a record name (:func:`record_name`) stands for, or None if it stands for none."""
    parts = name.split("/")
    if any(not p.startswith("@") for p in parts[:-1]):
        return None
    try:
        path = base64.urlsafe_b64decode("".join(p.removeprefix("@") for p in parts[:-1]) + parts[-1]).decode()
    except (binascii.Error, ValueError):
        return None
    return path if record_name(path) == name else None


@dataclass(frozen=True)
class Output:
    """One output file of the study, as ``snakemake --summary`` lists it."""

    path: str
    rule: str
    status: str
    plan: str


def study_outputs(root: Path, configfiles: list[str]) -> list[Output]:
    """Every output of the study and whether it is up to date, from ``snakemake --summary`` (a dry run)."""
    proc = _snakemake(root, ["--summary", *_configfile_args(configfiles)])
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    header = next((i for i, cols in enumerate(lines) if cols and cols[0] == "output_file"), None)
    if proc.returncode != 0 or header is None:
        raise ArchiveError(
            f"`snakemake --summary` failed in {root}, so the study's outputs are unknown:\n"
            f"{(proc.stderr or proc.stdout)[-3000:]}\nFix what it says (`snakemake -n` shows the same), "
            f"then export again."
        )
    names = lines[header]
    col = {name: names.index(name) for name in ("output_file", "rule", "status", "plan")}
    return [
        Output(*(cols[col[name]] for name in ("output_file", "rule", "status", "plan")))
        for cols in lines[header + 1 :]
        if len(cols) == len(names)
    ]


@dataclass(frozen=True)
class Entry:
    """One file to pack: where it lands (relative to the project root), what it is and which job made it."""

    path: str
    kind: str  # "output", "record", "log" or "memo"
    rule: str | None = None
    output: str | None = None  # the output whose record covers it (a folder for a folder output)


def select(root: Path, outputs: list[Output], stage: str, include: set[str]) -> list[Entry]:
    """The files an archive of ``stage`` holds: every output of the rules the stage needs, with Snakemake's
    record of each, plus what ``include`` asks for. Refuses when one of them is not up to date (an archive
    of it would not import as finished results) or has no record (Snakemake would rerun its job)."""
    groups = set(STAGES[stage]) | ({"rendered"} if "site" in include else set())
    chosen = [o for o in outputs if rule_group(o.rule) in groups and o.path.startswith(RESULTS + "/")]
    if "site" in include and not any(rule_group(o.rule) == "rendered" for o in chosen):
        raise ArchiveError(
            "--include site: this study has no rendered website to pack (Quarto renders it where it is "
            "installed: snakemake --cores 2 results/site); leave --include site out, or render it first"
        )
    stale = [o for o in chosen if o.plan != "no update"]
    if stale:
        shown = "\n  ".join(f"{o.path} ({o.status}; {o.plan})" for o in stale[:10])
        raise ArchiveError(
            f"{len(stale)} of the {len(chosen)} outputs the {stage} stage needs are not up to date, so "
            f"an archive of them would not import as finished results:\n  {shown}"
            + ("\n  ..." if len(stale) > 10 else "")
            + "\nRun the study first (snakemake --cores 2, with the same --configfile), then export again."
        )
    entries: list[Entry] = []
    for out in sorted(chosen, key=lambda o: o.path):
        record_file = root / METADATA / record_name(out.path)
        if not record_file.is_file():
            raise ArchiveError(
                f"{out.path} has no Snakemake record ({record_file}): it was not written by a Snakemake "
                f"job in this checkout, and an import of it would rerun its job. Rebuild it with "
                f"`snakemake --cores 2 {out.path} --forcerun {out.rule}`, then export again."
            )
        target = root / out.path
        files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
        entries += [Entry(p.relative_to(root).as_posix(), "output", out.rule, out.path) for p in files]
        entries.append(Entry(f"{METADATA}/{record_name(out.path)}", "record", out.rule, out.path))
        record = read_json(record_file)
        if "logs" in include:
            entries += [
                Entry(log, "log", out.rule)
                for log in record.get("log") or []
                if log.startswith(RESULTS + "/") and (root / log).is_file()
            ]
        if "memo" in include and "/probes/" in out.path and out.path.endswith(".npz"):
            memo = target.parent / ".memo"
            entries += [
                Entry(p.relative_to(root).as_posix(), "memo", out.rule)
                for p in sorted(memo.glob(f"{target.stem}.*"))
                if p.is_file()
            ]
    unique = {e.path: e for e in entries}  # a job's log is listed by each of its outputs' records
    return [unique[p] for p in sorted(unique)]


# --------------------------------------------------------------------------- code and configuration


def _configfile_args(configfiles: list[str]) -> list[str]:
    return [arg for c in configfiles for arg in ("--configfile", c)]


def resolved_config(root: Path, configfiles: list[str]) -> dict[str, Any]:
    """The study configuration as the workflow resolves it (files merged, validated, defaults filled in)."""
    from vaeflow.config import merged, read_config_files, validate_config

    files = read_config_files([root / c for c in configfiles])
    return validate_config(merged(files), root / "config" / "schema.yaml", files=files, check_device=False)


def digest_lines(text: str) -> dict[str, str]:
    """``{path: sha256}`` of a code-digest file's ``<sha256>  <path>`` lines (vaeflow.hashing.code_digest)."""
    return {path: sha for sha, _, path in (line.partition("  ") for line in text.splitlines() if line)}


def current_digest(root: Path, codeset: str) -> dict[str, str]:
    """``{path: sha256}`` of the source files this checkout's code digest ``codeset`` would list (the
    workflow's ``code_files``: each ``+``-joined module's imports, followed as vaeflow.hashing does)."""
    from vaeflow.hashing import source_files

    files: set[Path] = set()
    for module in codeset.split("+"):
        files.update(source_files(f"vaeflow.{module}", root / "src"))
    return {os.path.relpath(f, root): file_sha256(f) for f in sorted(files)}


def workflow_files(root: Path) -> dict[str, str]:
    """sha256 of the Snakefile and of each rules file: a rule's command and parameters live there."""
    paths = [root / "Snakefile", *sorted((root / "workflow" / "rules").glob("*.smk"))]
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in paths if p.is_file()}


def code_differences(root: Path, manifest: dict[str, Any], staged: Path) -> list[str]:
    """How the code the archived jobs ran differs from this checkout's, one line per code digest or source file,
    each naming the rules whose archived jobs ran it ([] when it is the same). Only code that an archived job
    (other than a code digest's) ran counts: other code digests are rebuilt in a moment, and the jobs that
    read them are not in the archive, so they run after an import anyway. The Snakefile and the rules files
    count too (a changed command or parameter reruns a job), file by file."""
    users: dict[str, set[str]] = {}
    for rule, info in manifest["code"]["rules"].items():
        if rule != "code_digest":
            for path in info["code"]:
                users.setdefault(path, set()).add(rule)

    def named(path: str) -> str:
        return f"{path} (rules {', '.join(sorted(users[path]))})"

    problems = []
    for path in sorted(p for p in users if p.startswith(f"{RESULTS}/code/")):
        codeset = Path(path).name.removesuffix(".sha256")
        archived = digest_lines((staged / path).read_text(encoding="utf-8"))
        try:
            current = current_digest(root, codeset)
        except ValueError as exc:
            problems.append(f"{named(path)}: {exc}")
            continue
        changed = sorted(p for p in archived.keys() & current.keys() if archived[p] != current[p])
        parts = [f"{', '.join(changed)} changed"] if changed else []
        if current.keys() - archived.keys():
            parts.append(f"{', '.join(sorted(current.keys() - archived.keys()))} new here")
        if archived.keys() - current.keys():
            parts.append(f"{', '.join(sorted(archived.keys() - current.keys()))} not used here")
        if parts:
            problems.append(f"{named(path)}: {'; '.join(parts)}")
    for path in sorted(p for p in users if not p.startswith(f"{RESULTS}/")):
        here = root / path
        if not here.is_file():
            problems.append(f"{named(path)}: missing in this checkout")
        elif file_sha256(here) != manifest["code"]["sources"].get(path):
            problems.append(f"{named(path)}: changed")
    archived_workflow, current_workflow = manifest["code"].get("workflow", {}), workflow_files(root)
    for path in sorted(archived_workflow.keys() | current_workflow.keys()):
        if archived_workflow.get(path) != current_workflow.get(path):
            how = (
                "missing here"
                if path not in current_workflow
                else "new here"
                if path not in archived_workflow
                else "changed"
            )
            problems.append(f"{path}: {how} (a rule's command or parameters may differ, and Snakemake reruns its jobs)")
    return problems


def config_differences(archived: Any, current: Any, prefix: str = "") -> list[str]:
    """The dotted keys at which two resolved configurations differ, sorted."""
    if isinstance(archived, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(archived) | set(current), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in current:
                out.append(f"{where} (only in the archive's)")
            elif key not in archived:
                out.append(f"{where} (only in this one)")
            else:
                out += config_differences(archived[key], current[key], where)
        return out
    return (
        []
        if archived == current
        else [f"{prefix}: {json.dumps(archived)} in the archive's, {json.dumps(current)} here"]
    )


def git_commit(root: Path) -> str:
    """The full commit id of the checkout (``unknown`` outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------- export


def compression(path: Path) -> str:
    """``""``, ``"gz"`` or ``"zst"`` from the archive's name; refuses other names, and ``.zst`` without
    the ``zstandard`` package."""
    name = path.name.lower()
    suffix = next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None:
        raise ArchiveError(
            f"{path}: name the archive STUDY.tar, STUDY.tar.gz or STUDY.tar.zst (the suffix sets the compression)"
        )
    if SUFFIXES[suffix] == "zst":
        _zstandard(path)
    return SUFFIXES[suffix]


def _zstandard(path: Path) -> Any:
    try:
        import zstandard
    except ImportError:
        raise ArchiveError(
            f"{path}: a .tar.zst archive needs the zstandard package, which is not installed here "
            f"(it is not a dependency of vaeflow); nothing was written. Install it (pip install "
            f"zstandard) or use .tar.gz, which needs nothing more."
        ) from None
    return zstandard


def manifest_for(
    root: Path, entries: list[Entry], *, configfiles: list[str], stage: str, include: list[str]
) -> dict[str, Any]:
    """The manifest of an archive of ``entries`` (files under ``root``): each file's path, sha256, size and
    time, and what made them (:mod:`vaeflow.archive`)."""
    from vaeflow.hashing import config_hash
    from vaeflow.provenance import git_version, package_versions

    files, rules, sources = [], {}, {}
    runs: dict[str, Counter] = {"device": Counter(), "train_device": Counter(), "train_precision": Counter()}
    versions: dict[str, Counter] = {}
    for entry in entries:
        file = root / entry.path
        stat = file.stat()
        item = {
            "path": entry.path,
            "kind": entry.kind,
            "sha256": file_sha256(file),
            "size": stat.st_size,
            "mtime": stat.st_mtime,
        }
        item.update({k: v for k, v in (("rule", entry.rule), ("output", entry.output)) if v is not None})
        files.append(item)
        if entry.kind == "record":
            record = read_json(file)
            info = rules.setdefault(entry.rule, {"jobs": set(), "code": set()})
            info["jobs"].add((record.get("job_hash"), record.get("endtime")))
            checksums = record.get("input_checksums") or {}
            for path in record.get("input") or []:
                if path.startswith(f"{RESULTS}/code/"):
                    info["code"].add(path)
                elif path.startswith(CODE_DIRS) and path in checksums:
                    info["code"].add(path)
                    sources[path] = checksums[path].split(":")[-1]
        if entry.kind == "output" and entry.path.endswith("/metrics.json") and entry.rule == "evaluate":
            metrics = read_json(file)
            for key, counter in runs.items():
                counter[str(metrics.get(key, "unknown"))] += 1
            for name, version in (metrics.get("versions") or {}).items():
                versions.setdefault(name, Counter())[version] += 1
    config = resolved_config(root, configfiles)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "stage": stage,
        "include": sorted(include),
        "code": {
            "version": git_version(root),
            "commit": git_commit(root),
            "rules": {
                rule: {"jobs": len(info["jobs"]), "code": sorted(info["code"])} for rule, info in sorted(rules.items())
            },
            "sources": dict(sorted(sources.items())),
            "workflow": workflow_files(root),
        },
        "config": {
            "files": list(configfiles),
            "hash": config_hash(config),
            "settings": config,
            "texts": {c: (root / c).read_text(encoding="utf-8") for c in configfiles},
        },
        "software": {
            "exported_with": package_versions(),
            "runs": {name: dict(sorted(c.items())) for name, c in sorted(versions.items())},
        },
        "hardware": {"exported_on": _hardware(), "runs": {key: dict(sorted(c.items())) for key, c in runs.items()}},
        "files": files,
    }


def _hardware() -> dict[str, str]:
    from vaeflow.site.environment import hardware

    return hardware()


class _HashingReader(io.RawIOBase):
    """A reader that passes ``fileobj``'s bytes through and hashes them."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fileobj, self.sha = fileobj, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.fileobj.read(len(buffer))
        self.sha.update(data)
        buffer[: len(data)] = data
        return len(data)


class _HashingWriter:
    """A writer that passes bytes on to ``fileobj`` and hashes them: the archive's sha256 without reading it again."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fileobj, self.sha = fileobj, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self.fileobj.write(data)

    def flush(self) -> None:
        self.fileobj.flush()


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(dest: Path, root: Path, manifest: dict[str, Any]) -> str:
    """Write the archive: ``MANIFEST.json`` first, then every file it lists (from ``root``), each checked
    again against its sha256 as it is packed. Written to a temporary file and moved into place; returns
    the archive's sha256. File times are kept to the nanosecond (PAX headers), so an import restores them."""
    kind = compression(dest)
    text = (json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    with atomic_path(dest) as tmp, open(tmp, "wb") as raw:
        hashing = _HashingWriter(raw)
        if kind == "gz":
            stream: Any = gzip.GzipFile(fileobj=hashing, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
        elif kind == "zst":
            stream = _zstandard(dest).ZstdCompressor(level=ZSTD_LEVEL).stream_writer(hashing, closefd=False)
        else:
            stream = hashing
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_tarinfo(MANIFEST, len(text), time.time()), io.BytesIO(text))
            for item in manifest["files"]:
                try:
                    with open(root / item["path"], "rb") as fh:
                        reader = _HashingReader(fh)
                        tar.addfile(_tarinfo(item["path"], item["size"], item["mtime"]), io.BufferedReader(reader))
                    same = reader.sha.hexdigest() == item["sha256"]
                except OSError as exc:
                    if "unexpected end of data" not in str(exc):  # tarfile's word for a file shorter than its size
                        raise
                    same = False
                if not same:
                    raise ArchiveError(
                        f"{item['path']} changed while it was being exported (is a job still writing "
                        f"it?); wait for the study to finish, then export again"
                    )
        if stream is not hashing:
            stream.close()
    return hashing.sha.hexdigest()


def export_results(
    root: Path,
    dest: Path,
    *,
    configfiles: list[str],
    stage: str = DEFAULT_STAGE,
    include: list[str] = (),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Pack the results ``stage`` needs (:data:`STAGES`, plus ``include``) into ``dest`` with their manifest;
    returns a summary (archive, sha256, size, file counts)."""
    if stage not in STAGES:
        raise ArchiveError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    unknown = set(include) - set(INCLUDES)
    if unknown:
        raise ArchiveError(f"unknown --include {', '.join(sorted(unknown))}; choose from {', '.join(INCLUDES)}")
    if "site" in include and stage != "render":
        raise ArchiveError(
            "--include site packs the rendered website, which only an archive of --stage render can "
            "import as up to date; add --stage render"
        )
    compression(dest)  # a bad name or a missing zstandard fails before the study is read
    started = time.monotonic()
    outputs = study_outputs(root, configfiles)
    entries = select(root, outputs, stage, set(include))
    manifest = manifest_for(root, entries, configfiles=configfiles, stage=stage, include=list(include))
    digest = write_archive(dest, root, manifest)
    sidecar = dest.with_name(dest.name + ".sha256")
    write_text_atomic(sidecar, f"{digest}  {dest.name}\n")
    kinds = Counter(item["kind"] for item in manifest["files"])
    size = dest.stat().st_size
    if manifest["code"]["version"].endswith("-dirty"):
        log(
            f"warning: exported from a checkout with uncommitted changes ({manifest['code']['version']}): a reviewer "
            f"cannot check out this exact code; commit, run the study, and export again"
        )
    log(
        f"{dest}: {kinds['output']} result files of stage {stage} and {kinds['record']} Snakemake job records"
        + "".join(f", {n} {kind}s" for kind, n in sorted(kinds.items()) if kind not in ("output", "record"))
        + f"; {size / 2**20:.1f} MiB in {time.monotonic() - started:.1f} s"
    )
    log(
        f"sha256 {digest} (also in {sidecar.name}); code {manifest['code']['version']} "
        f"(commit {manifest['code']['commit']}), config {', '.join(configfiles)} (hash {manifest['config']['hash']})"
    )
    return {"archive": str(dest), "sha256": digest, "size": size, "files": dict(kinds)}


# --------------------------------------------------------------------------- import: reading and checking


def _member_problem(name: str) -> str | None:
    """Why a member name may not be written (None if it may): it must be a normalised relative path that lands
    in results/, or a Snakemake record (checked against the manifest by the caller)."""
    if not name or "\x00" in name or "\\" in name:
        return "an empty name, or one with a NUL or a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a path with '..', which would climb out of the project"
    if posixpath.normpath(name) != name:
        return "a path that is not in normal form (./, // or a trailing /)"
    if not (name.startswith(RESULTS + "/") or name.startswith(METADATA + "/")):
        return "a path outside results/"
    return None


def check_manifest(manifest: Any, archive: Path) -> dict[str, dict[str, Any]]:
    """The manifest's files by path, after checking it is a vaeflow results manifest whose paths all land in
    results/ (or are Snakemake records of archived outputs) and whose outputs all have their record."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(
            f"{archive}: not a vaeflow results archive (its {MANIFEST} does not say format {FORMAT!r}); "
            f"nothing was written. Make one with `python -m vaeflow export-results`."
        )
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ArchiveError(
            f"{archive}: made by a newer vaeflow (archive format {manifest['format_version']}, this one "
            f"reads {FORMAT_VERSION}); nothing was written. Check out the code version it names "
            f"({manifest.get('code', {}).get('version')}) and import it there."
        )
    try:
        well_formed = (
            isinstance(manifest["code"]["rules"], dict)
            and isinstance(manifest["code"]["sources"], dict)
            and manifest["stage"] in STAGES
            and isinstance(manifest["config"]["settings"], dict)
            and isinstance(manifest["config"]["hash"], str)
            and isinstance(manifest["config"]["files"], list)
            and isinstance(manifest["files"], list)
            and all(isinstance(i, dict) for i in manifest["files"])
        )
    except (KeyError, TypeError):
        well_formed = False
    if not well_formed:
        raise ArchiveError(
            f"{archive}: its {MANIFEST} lacks what an export writes (code, config, stage, files); the "
            f"archive is damaged or was not made by `python -m vaeflow export-results`. Nothing was written."
        )
    files: dict[str, dict[str, Any]] = {}
    for item in manifest["files"]:
        path = item.get("path", "")
        problem = _member_problem(path) if isinstance(path, str) else "a path that is not text"
        if problem is None and (
            item.get("kind") not in KINDS
            or not isinstance(item.get("size"), int)
            or not isinstance(item.get("mtime"), (int, float))
            or not 0 <= item["mtime"] < 2**40
            or (item["kind"] in ("output", "record") and not isinstance(item.get("output"), str))
        ):
            problem = "an entry without a known kind, a size, a time or (for an output or record) its output"
        if problem is None and item.get("kind") == "record":
            output = record_output(path.removeprefix(METADATA + "/"))
            if output is None or output != item.get("output") or not output.startswith(RESULTS + "/"):
                problem = "a Snakemake record that is not the record of the output it names"
        elif problem is None and not path.startswith(RESULTS + "/"):
            problem = "a path outside results/"
        if problem is None and path in files:
            problem = "a path listed twice"
        if problem is None and not re.fullmatch(r"[0-9a-f]{64}", str(item.get("sha256"))):
            problem = "an entry without a sha256"
        if problem:
            raise ArchiveError(
                f"{archive}: its manifest lists {path!r}, {problem}; refusing the archive (nothing was "
                f"written). Only archives made by `python -m vaeflow export-results` can be imported."
            )
        files[path] = item
    outputs = {item["output"] for item in files.values() if item["kind"] == "output"}
    recorded = {item["output"] for item in files.values() if item["kind"] == "record"}
    if outputs - recorded:
        raise ArchiveError(
            f"{archive}: no Snakemake record for {sorted(outputs - recorded)[0]} (and "
            f"{len(outputs - recorded) - 1} more): Snakemake would rerun their jobs. Nothing was written; export the "
            f"archive again"
        )
    return files


def _open_tar(raw: BinaryIO, archive: Path) -> tarfile.TarFile:
    """The archive as a stream of members, whatever its compression (read from its first bytes, not its name)."""
    magic = raw.read(4)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return tarfile.open(fileobj=raw, mode="r|gz")
    if magic == b"\x28\xb5\x2f\xfd":
        return tarfile.open(fileobj=_zstandard(archive).ZstdDecompressor().stream_reader(raw), mode="r|")
    return tarfile.open(fileobj=raw, mode="r|")


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"a hard link to {member.linkname!r}"
    if member.isdir():
        return "a folder"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a FIFO"
    return "not a regular file"


def unpack(archive: Path, staging: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read the archive into ``staging``, checking every member against the manifest (path, type, size,
    sha256) and that none is missing or extra; returns the manifest and its files by path. Writes nothing
    outside ``staging``."""
    read = 0
    name = MANIFEST
    try:
        with open(archive, "rb") as raw, _open_tar(raw, archive) as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isreg() or first.size > MANIFEST_LIMIT:
                raise ArchiveError(
                    f"{archive}: not a vaeflow results archive (its first member is not {MANIFEST}); "
                    f"nothing was written. Make one with `python -m vaeflow export-results`."
                )
            try:
                manifest = json.loads(tar.extractfile(first).read())
            except ValueError as exc:
                raise ArchiveError(
                    f"{archive}: its {MANIFEST} is not valid JSON ({exc}); the archive is damaged. "
                    f"Nothing was written; get an intact copy."
                ) from None
            files = check_manifest(manifest, archive)
            seen: set[str] = set()
            while (member := tar.next()) is not None:
                name = member.name
                problem = _member_problem(name)
                if problem is None and not member.isreg():
                    problem = _member_kind(member)
                if problem is None and name not in files:
                    problem = "a file its manifest does not list"
                if problem is None and name in seen:
                    problem = "a second copy of a file"
                if problem:
                    raise ArchiveError(
                        f"{archive}: member {name!r} is {problem}; an archive may hold only the regular "
                        f"files its manifest lists, under results/ (and their Snakemake records). Refusing "
                        f"it: nothing was written. Use an archive made by `python -m vaeflow export-results`."
                    )
                expected = files[name]
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                sha = hashlib.sha256()
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        sha.update(block)
                        out.write(block)
                if member.size != expected["size"] or sha.hexdigest() != expected["sha256"]:
                    raise ArchiveError(
                        f"{archive}: member {name} does not match its manifest (sha256 {sha.hexdigest()[:16]}..., "
                        f"{member.size} bytes; the manifest says {expected['sha256'][:16]}..., {expected['size']} "
                        "bytes): "
                        "the archive was altered or damaged after it was made. Nothing was written. Get an intact "
                        "copy "
                        f"(compare its sha256 with the one published beside it: sha256sum {archive.name})."
                    )
                if expected["kind"] == "record":
                    try:
                        record = json.loads(target.read_text(encoding="utf-8"))
                    except ValueError:
                        record = None
                    if not (
                        isinstance(record, dict)
                        and isinstance(record.get("rule"), str)
                        and isinstance(record.get("input", []), list)
                    ):
                        raise ArchiveError(
                            f"{archive}: member {name} is not a Snakemake job record (JSON naming its "
                            f"rule); the archive is damaged. Nothing was written; get an intact copy."
                        )
                seen.add(name)
                read += 1
    except ArchiveError:
        raise
    except _read_errors() as exc:
        if isinstance(exc, OSError) and exc.filename and str(staging) in str(exc.filename):
            raise ArchiveError(
                f"cannot unpack {archive} into {staging}: {exc}; free space there (df -h {staging.parent}) "
                f"and import again. Nothing was written to results/."
            ) from None
        raise ArchiveError(
            f"{archive}: cannot be read past member {name} ({read} files read): {type(exc).__name__}: "
            f"{exc}. It is truncated or damaged (an interrupted download or copy?): get an intact copy "
            f"and compare its sha256 with the one published beside it. Nothing was written."
        ) from None
    missing = sorted(set(files) - seen)
    if missing:
        raise ArchiveError(
            f"{archive}: it ends after {len(seen)} of the {len(files)} files its manifest lists (missing "
            f"{missing[0]}{' and more' if len(missing) > 1 else ''}): it is truncated. Get an intact copy "
            f"(compare its sha256 with the one published beside it). Nothing was written."
        )
    return manifest, files


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a truncated or damaged archive raises (tarfile wraps zlib's errors; gzip's are OSError)."""
    errors: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, OSError, ValueError)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


# --------------------------------------------------------------------------- import: writing


def _landing(root: Path, path: str) -> Path:
    """Where ``path`` lands; refuses a path that an existing link in the checkout would carry outside its
    top folder (results/ or .snakemake/metadata/; either may itself be a link, e.g. to scratch space)."""
    top = RESULTS if path.startswith(RESULTS + "/") else METADATA
    target = root / path
    base = (root / top).resolve()
    if not target.parent.resolve().is_relative_to(base):
        raise ArchiveError(
            f"{path} would land in {target.parent.resolve()}, outside {root / top}, through a link in "
            f"this checkout. Nothing was written; remove that link and import again."
        )
    return target


def _place(staged: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staged, target)
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: results/ on another file system than the staging folder
            raise
        stat = staged.stat()
        with atomic_path(target) as tmp:
            shutil.copyfile(staged, tmp)
            os.utime(tmp, (stat.st_atime, stat.st_mtime))


def _folder_outputs(files: dict[str, dict[str, Any]]) -> set[str]:
    return {i["output"] for i in files.values() if i["kind"] == "output" and i["output"] != i["path"]}


def conflicts(root: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    """The results an import would replace with other bytes, and the files of a folder output it would replace
    that the archive does not hold (sorted)."""
    found = {
        path
        for path, item in files.items()
        if item["kind"] != "record" and (root / path).is_file() and file_sha256(root / path) != item["sha256"]
    }
    for output in _folder_outputs(files):
        if (root / output).is_dir():
            here = (p.relative_to(root).as_posix() for p in (root / output).rglob("*") if p.is_file())
            found.update(p for p in here if p not in files)
    return sorted(found)


def time_shift(root: Path, staging: Path, files: dict[str, dict[str, Any]]) -> float:
    """Seconds to move the imported files' times by (0 or less) so that each is older than every file of this
    checkout an imported job read (its code, notebooks, raw data), keeping their order among themselves.

    Snakemake compares an input's checksum with the recorded one only when the input is newer than the
    output; a checkout whose files carry old times (unpacked from a source tarball, say) would otherwise hide
    a changed source file from it. A fresh clone's files are newer than any result, so times stay as they were.
    """
    read = {
        p
        for path, item in files.items()
        if item["kind"] == "record"
        for p in read_json(staging / path).get("input") or []
        if not p.startswith(RESULTS + "/")
    }
    times = [(root / p).stat().st_mtime for p in read if (root / p).is_file()]
    newest = max(item["mtime"] for item in files.values())
    return min(0.0, min(times) - 1.0 - newest) if times else 0.0


def install(staging: Path, root: Path, files: dict[str, dict[str, Any]]) -> None:
    """Move the checked files from ``staging`` into place: results first, then Snakemake's records (a job
    whose record is missing is simply rerun, so an interrupted install never makes stale results look
    current). A folder output is replaced as a whole; file times as :func:`time_shift` says."""
    targets = {path: _landing(root, path) for path in files}
    shift = time_shift(root, staging, files)
    for output in _folder_outputs(files):
        if (root / output).is_dir():
            shutil.rmtree(root / output)
    for path in sorted(files, key=lambda p: (files[p]["kind"] == "record", p)):
        mtime = files[path]["mtime"] + shift
        os.utime(staging / path, (mtime, mtime))
        _place(staging / path, targets[path])
        if files[path]["kind"] == "record":
            marker = root / INCOMPLETE / path.removeprefix(METADATA + "/")
            if marker.is_file():
                marker.unlink()  # an unfinished job's marker would make Snakemake rerun the imported output


def dry_run_plan(root: Path, configfiles: list[str]) -> dict[str, int]:
    """The jobs ``snakemake -n`` plans in ``root``, counted per rule ({} when there is nothing to do)."""
    proc = _snakemake(root, ["-n", *_configfile_args(configfiles)])
    if proc.returncode != 0:
        raise ArchiveError(f"`snakemake -n` failed in {root}:\n{(proc.stderr or proc.stdout)[-3000:]}")
    return plan_counts(proc.stdout)


def plan_counts(out: str) -> dict[str, int]:
    """Job counts per rule from a dry run's ``Job stats`` table ({} when nothing is to be done)."""
    if "Job stats:" not in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.M) if rule not in ("total", "all")}


def _snakemake(root: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=root, env=env, capture_output=True, text=True)


def _refusal(
    archive: Path,
    manifest: dict[str, Any],
    code: list[str],
    config: list[str],
    configfiles: list[str],
    current_hash: str,
) -> str:
    lines = [
        f"{archive} was made by other code or configuration than this checkout's, so its results are not "
        f"what this checkout computes. Nothing was written."
    ]
    if code:
        lines += [f"Code that differs ({len(code)}; the rules named ran it):"] + [f"  {line}" for line in code[:20]]
        lines += ["  ..."] if len(code) > 20 else []
    if config:
        lines += [
            f"The configuration differs: the archive's ({', '.join(manifest['config']['files'])}, hash "
            f"{manifest['config']['hash']}) against this one ({', '.join(configfiles)}, hash {current_hash}), at "
            f"{len(config)} keys:"
        ]
        lines += [f"  {line}" for line in config[:20]] + (["  ..."] if len(config) > 20 else [])
    steps = []
    if code and manifest["code"]["commit"] != "unknown":
        steps.append(
            f"check out the archive's code (git checkout {manifest['code']['commit']}; it was exported from "
            f"{manifest['code']['version']})"
        )
    elif code:
        steps.append(
            "check out the code the archive was made with (it was not exported from a git checkout, so its "
            "manifest names no commit; its code digests list every source file's sha256)"
        )
    if config:
        steps.append(
            f"import with the archive's configuration (--configfile "
            f"{' --configfile '.join(manifest['config']['files'])}; its text is in the archive's {MANIFEST}, "
            f"under config.texts)"
        )
    lines.append(
        f"To fix: {' and '.join(steps)}, then import again. Or import anyway with --force: Snakemake then reruns "
        f"the jobs of the rules named above and everything after them, and the import lists them."
    )
    return "\n".join(lines)


def import_results(
    root: Path,
    archive: Path,
    *,
    configfiles: list[str],
    force: bool = False,
    overwrite: bool = False,
    check: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Check ``archive`` completely, then restore its results and Snakemake's records under ``root`` and write
    :data:`IMPORT_RECORD`; returns that record. ``check``: only check, write nothing (returns {})."""
    from vaeflow.hashing import config_hash

    if not archive.is_file():
        raise ArchiveError(
            f"{archive}: no such archive file; give the path of a .tar, .tar.gz or .tar.zst made by "
            f"`python -m vaeflow export-results`"
        )
    started = time.monotonic()
    digest = file_sha256(archive)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".vaeflow-import-", dir=root))
    except OSError as exc:
        raise ArchiveError(
            f"cannot unpack {archive} in {root.resolve()}: {exc.strerror or exc}; nothing was written. "
            f"Import in a checkout you can write to."
        ) from None
    try:
        manifest, files = unpack(archive, staging)
        code = code_differences(root, manifest, staging)
        current = resolved_config(root, configfiles)
        current_hash = config_hash(current)
        config = (
            []
            if current_hash == manifest["config"]["hash"]
            else config_differences(manifest["config"]["settings"], current) or ["(the settings hash differently)"]
        )
        if (code or config) and not force:
            raise ArchiveError(_refusal(archive, manifest, code, config, configfiles, current_hash))
        replaced = conflicts(root, files)
        if replaced and not overwrite:
            raise ArchiveError(
                f"results/ already holds {len(replaced)} files that the import would replace with other "
                f"bytes or remove (e.g. {', '.join(replaced[:3])}). Nothing was written. Import into a "
                f"fresh clone, move results/ aside, or pass --overwrite to replace them."
            )
        for path in files:
            _landing(root, path)
        kinds = Counter(item["kind"] for item in files.values())
        size = sum(item["size"] for item in files.values())
        if check:
            log(
                f"{archive}: intact ({len(files)} files, {size / 2**20:.1f} MiB, sha256 {digest}); "
                + (
                    "its code and configuration are this checkout's"
                    if not (code or config)
                    else f"{len(code)} code and {len(config)} configuration differences"
                )
                + "; nothing was written (--check)"
            )
            return {}
        install(staging, root, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = {
        "archive": archive.name,
        "sha256": digest,
        "size": archive.stat().st_size,
        "stage": manifest["stage"],
        "exported": manifest["created"],
        "imported": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": manifest["code"]["version"],
        "commit": manifest["code"]["commit"],
        "config_hash": manifest["config"]["hash"],
        "forced": bool(code or config),
        "differences": code + [f"config {line}" for line in config],
        "files": {p: item["sha256"] for p, item in sorted(files.items()) if item["kind"] != "record"},
    }
    write_json_atomic(root / IMPORT_RECORD, record)
    log(
        f"{archive}: imported {kinds['output']} result files of stage {manifest['stage']} and {kinds['record']} "
        f"Snakemake job records ({size / 2**20:.1f} MiB, sha256 {digest}) in {time.monotonic() - started:.1f} s; "
        f"exported {manifest['created']} from {manifest['code']['version']}"
    )
    records = [read_json(root / p) for p, item in files.items() if item["kind"] == "record"]
    for line in _missing_data(root, records):
        log(line)
    if code or config:
        log(
            f"--force: imported despite {len(code)} code and {len(config)} configuration differences; asking Snakemake "
            f"what will rerun..."
        )
        plan = dry_run_plan(root, configfiles)
        log("snakemake -n plans: " + (", ".join(f"{rule} x{n}" for rule, n in sorted(plan.items())) or "nothing"))
    else:
        log(next_steps(manifest["stage"], configfiles))
    return record


def _missing_data(root: Path, records: list[dict[str, Any]]) -> Iterator[str]:
    """A note for each raw data file (outside results/ and the code) an imported job read that this checkout lacks."""
    missing = sorted(
        {
            p
            for r in records
            for p in r.get("input") or []
            if not p.startswith((RESULTS + "/", *CODE_DIRS)) and not (root / p).exists()
        }
    )
    if missing:
        yield (
            f"note: {len(missing)} raw data files the imported jobs read are not here (e.g. {missing[0]}). Fetch them "
            f"on their own first (snakemake --cores 1 --until download_data), and only then run the study: fetched "
            f"in the same run, Snakemake would rebuild the prepared data and everything after it."
        )


def next_steps(stage: str, configfiles: list[str]) -> str:
    """What to run after an import of ``stage``."""
    config = "".join(f" --configfile {c}" for c in configfiles if c != "config/config.yaml")
    runs = {
        "evaluate": "evaluation, the probes, the analyses and the site",
        "analyses": "the analyses and the site (no training, evaluation or probe job)",
        "site": "the site's pages (no analysis)",
        "render": "nothing but Quarto's render, where Quarto is installed",
    }
    return (
        f"next: `snakemake --cores 2{config}` runs {runs[stage]}; `snakemake -n{config}` lists it first. "
        f"Rebuild one figure: `snakemake --cores 2 results/figures/<name>.svg --forcerun <rule>{config}`."
    )
