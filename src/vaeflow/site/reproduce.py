"""The Reproduce page: for every table and figure on the site, the job that made it.

Snakemake keeps a record of the job behind every output it wrote
(``.snakemake/metadata/<urlsafe-base64 of the path>``: rule, inputs with their sha256, shell
command, start and end times). This module reads those records for the site's tables,
figures and variables, groups the outputs by the job that wrote them, and writes one
Markdown section per output (anchor ``figure-<stem>``, ``table-<stem>`` or ``variables``,
the targets of the captions' provenance links) with the command that rebuilds exactly that
file, and one section per job with its notebook, settings, run time and input hashes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_CONFIG = "config/config.yaml"
#: written by ``python -m vaeflow import-results`` (vaeflow.archive): the archive the results came from. Read
#: when present, not a declared input: an import of an archive that holds this page itself must leave the
#: study up to date, and after an import of the runs this page is rebuilt anyway (its tables are new).
IMPORTED = "results/imported.json"


@dataclass
class Output:
    path: str
    kind: str  # "figure", "table" or "variables"
    stem: str

    @property
    def anchor(self) -> str:
        return "variables" if self.kind == "variables" else f"{self.kind}-{self.stem}"


@dataclass
class Job:
    rule: str
    record: dict
    outputs: list[Output] = field(default_factory=list)

    @property
    def notebook(self) -> str | None:
        return next((p for p in self.record.get("input", []) if p.endswith(".ipynb")), None)

    @property
    def run_time_s(self) -> float | None:
        return run_seconds(self.record)


# Snakemake stamps each output's record separately, so the records of one job's outputs differ in their start
# and end times by milliseconds; two jobs of one rule and job hash start far further apart than this
SAME_JOB_S = 1.0


def same_job(a: dict, b: dict) -> bool:
    """Whether two output records were written by one job: same rule and job hash, started within
    :data:`SAME_JOB_S` of each other (records without start times: the same end time)."""
    if (a["rule"], a.get("job_hash")) != (b["rule"], b.get("job_hash")):
        return False
    if a.get("starttime") is None or b.get("starttime") is None:
        return a.get("endtime") == b.get("endtime")
    return abs(float(a["starttime"]) - float(b["starttime"])) < SAME_JOB_S


def run_seconds(meta: dict) -> float | None:
    """How long the job behind a record ran, or ``None`` when the record lacks its times."""
    start, end = meta.get("starttime"), meta.get("endtime")
    return None if start is None or end is None else float(end) - float(start)


def classify(path: str) -> Output:
    """What a site output is, from its path."""
    name = Path(path).name
    if path.startswith("results/figures/"):
        return Output(path, "figure", name.split(".", 1)[0])
    if path.startswith("results/tables/"):
        return Output(path, "table", name.split(".", 1)[0])
    if name == "variables.yml":
        return Output(path, "variables", "variables")
    raise ValueError(f"{path}: not a table, figure or variables file of the site; the Reproduce page lists only those")


def record(path: str, metadata_dir: Path) -> dict:
    """Snakemake's record of the job that wrote ``path``."""
    key = base64.urlsafe_b64encode(path.encode()).decode()
    file = metadata_dir / key
    if not file.is_file():
        raise FileNotFoundError(
            f"no Snakemake record of {path} in {metadata_dir}: the Reproduce page describes outputs that Snakemake "
            f"built; build them with `snakemake --cores 2 {path}` in this checkout"
        )
    return json.loads(file.read_text(encoding="utf-8"))


def group_by_job(paths: list[str], metadata_dir: Path) -> list[Job]:
    """The site's outputs grouped by the job that wrote them, in rule order."""
    outputs = {path: classify(path) for path in sorted(paths)}
    jobs = [
        Job(meta["rule"], meta, [outputs[p] for p in wrote]) for meta, wrote in distinct_jobs(outputs, metadata_dir)
    ]
    return sorted(jobs, key=lambda job: job.rule)


def distinct_jobs(paths: Iterable[str], metadata_dir: Path) -> list[tuple[dict, list[str]]]:
    """Each job behind ``paths`` once (:func:`same_job`): its first path's record and the paths it wrote."""
    jobs: list[tuple[dict, list[str]]] = []
    for path in paths:
        meta = record(path, metadata_dir)
        found = next((wrote for first, wrote in jobs if same_job(first, meta)), None)
        if found is None:
            jobs.append((meta, [path]))
        else:
            found.append(path)
    return jobs


def rebuild_command(rule: str, path: str, configfiles: list[str]) -> str:
    """Rerun the one job behind ``path`` and nothing else: target the file, ``--forcerun`` its rule.

    The target comes first: ``--forcerun`` takes several rule names and would read a path after
    it as one more, leaving no target (and so the whole study)."""
    config = "".join(f" --configfile {c}" for c in configfiles if c != DEFAULT_CONFIG)
    return f"snakemake --cores 2 {path} --forcerun {rule}{config}"


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def input_hashes(job: Job, root: Path) -> dict[str, str]:
    """Each input's sha256 as Snakemake recorded it when the job ran (files too large for it to
    record are hashed now; the DAG being up to date, they are the files the job read)."""
    recorded = job.record.get("input_checksums") or {}
    hashes = {}
    for path in job.record.get("input", []):
        if path in recorded:
            hashes[path] = recorded[path]
        elif (root / path).is_file():
            hashes[path] = _sha256(root / path)
        else:
            hashes[path] = "(missing now)"
    return hashes


def combined_digest(hashes: dict[str, str]) -> str:
    """One sha256 over every ``path checksum`` line, sorted: equal exactly when every input is."""
    lines = "\n".join(f"{path} {value}" for path, value in sorted(hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "unknown"
    return datetime.fromtimestamp(float(timestamp), tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


#: where the workflow's code-digest files live (rule code_digest): a job's code inputs are these
CODE_DIGESTS = "results/code/"


def code_hashes(hashes: dict[str, str], root: Path) -> dict[str, str]:
    """The source files a job ran and their sha256: its direct code inputs (``src/``, ``workflow/``)
    and the files listed in its code-digest inputs (``<sha256>  <path>`` lines)."""
    code = {p: h.split(":")[-1] for p, h in hashes.items() if p.startswith(("src/", "workflow/"))}
    for path in hashes:
        digest = root / path
        if path.startswith(CODE_DIGESTS) and digest.is_file():
            for line in digest.read_text().splitlines():
                sha, _, source = line.partition("  ")
                code[source] = sha
    return dict(sorted(code.items()))


def imported_from(root: Path) -> list[str]:
    """The paragraph that names the results archive the results were imported from ([] when they were not):
    its file name and sha256, where and when it was made, and how many of its files are still its own here."""
    record_file = root / IMPORTED
    if not record_file.is_file():
        return []
    record = json.loads(record_file.read_text(encoding="utf-8"))
    files = record.get("files", {})
    rebuilt = []
    for path, sha in files.items():
        file = root / path
        if not file.is_file():
            rebuilt.append(path)
            continue
        with open(file, "rb") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() != sha:
                rebuilt.append(path)
    text = (
        f"The results this site was built from were imported from the results archive `{record['archive']}` "
        f"(sha256 `{record['sha256']}`), exported on {record['exported']} from checkout `{record['code_version']}` "
        f"(commit `{record['commit']}`) and imported here on {record['imported']} with "
        f"`python -m vaeflow import-results`. It held the outputs of every job before the `{record['stage']}` "
        f"stage of the study, which therefore did not run here. "
    )
    if rebuilt:
        text += f"{len(rebuilt)} of its {len(files)} files have been rebuilt here since (e.g. `{sorted(rebuilt)[0]}`)."
    else:
        text += f"All {len(files)} of its files are unchanged here."
    if record.get("forced"):
        text += (
            " It was imported with `--force` although its code or configuration differed from this checkout's: "
            + "; ".join(f"`{d}`" for d in record.get("differences", [])[:10])
            + "."
        )
    return [text, ""]


def markdown(jobs: list[Job], root: Path, configfiles: list[str], code_version: str) -> str:
    """The body of the Reproduce page."""
    lines = [
        "Every table and figure caption on this site links to its entry below. Each entry names the",
        "Snakemake rule and the job that wrote the file, and gives the command that rebuilds exactly",
        "that file from its recorded inputs (run it in a checkout of the code version below, with",
        "the rest of the study built; `--forcerun` reruns that one job and nothing upstream).",
        "Input hashes are the sha256 Snakemake recorded for each input when the job ran.",
        "",
        f"This page was generated from checkout `{code_version}` with the configuration "
        + ", ".join(f"`{c}`" for c in (configfiles or [DEFAULT_CONFIG]))
        + ".",
        "",
        *imported_from(root),
    ]
    for job in jobs:
        hashes = input_hashes(job, root)
        run_time = job.run_time_s
        job_anchor = f"job-{job.rule}"
        lines += [f"## Rule `{job.rule}` {{#{job_anchor}}}", ""]
        if job.notebook:
            lines.append(f"- **Notebook:** `{job.notebook}` (executed by papermill; the executed copy is kept)")
        lines += [
            f"- **Finished:** {_when(job.record.get('endtime'))}; **run time:** "
            + ("unknown" if run_time is None else f"{run_time:.1f} s"),
            f"- **Inputs:** {len(hashes)} files, combined digest `{combined_digest(hashes)[:16]}`",
        ]
        code = code_hashes(hashes, root)
        if code:
            lines.append("- **Code:** " + ", ".join(f"`{p}` (`{sha[:12]}`)" for p, sha in code.items()))
        params = job.record.get("params") or []
        if params:
            lines.append("- **Settings:** " + "; ".join(f"`{p.strip(chr(39))}`" for p in params))
        lines += ["", "<details><summary>Every input and its sha256</summary>", "", "| input | sha256 |", "|---|---|"]
        lines += [f"| `{path}` | `{value.split(':')[-1]}` |" for path, value in sorted(hashes.items())]
        lines += ["", "</details>", ""]
        for output in job.outputs:
            title = {"figure": "Figure", "table": "Table", "variables": "Quoted numbers"}[output.kind]
            file = root / output.path
            lines += [
                f"### {title} `{output.stem}` {{#{output.anchor}}}",
                "",
                f"- **File:** `{output.path}` (sha256 `{_sha256(file).split(':')[-1][:16]}`)"
                if file.is_file()
                else f"- **File:** `{output.path}`",
                f"- **Made by:** rule [`{job.rule}`](#{job_anchor})",
                "- **Rebuild:**",
                "",
                "```bash",
                rebuild_command(job.rule, output.path, configfiles),
                "```",
                "",
            ]
    return "\n".join(lines)


def write_reproduce(
    paths: list[str], out: Path, root: Path, metadata_dir: Path, configfiles: list[str], code_version: str
) -> None:
    from vaeflow.io import write_text_atomic

    jobs = group_by_job(paths, metadata_dir)
    write_text_atomic(out, markdown(jobs, root, configfiles, code_version))
