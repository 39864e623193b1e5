"""No file of the project points outside the repository.

The design notes live in ``docs/`` (``docs/design.md``, ``docs/adding.md``); a reference to notes
kept elsewhere (``../shared/DESIGN.md``, "see DESIGN.md") leaves a newcomer with a dangling
pointer. Checked over every text file git tracks (and the new ones it does not ignore):

* a relative path climbing with ``../`` must land inside the repository (resolved from the file's
  folder, as Snakemake, Quarto and Markdown resolve them);
* a document named in capitals (``DESIGN.md``, ``CONTRIBUTING.md``) or under ``docs/`` must be a
  file of the repository;
* a Markdown link in ``README.md`` or ``docs/`` to a local file must resolve to one.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Files that hold an escaping path on purpose, and why; the references in them are not checked.
DELIBERATE = {
    "tests/test_archive.py": "archive members that try to escape results/ ('../evil.txt'): the import must refuse them",
    "tests/test_references.py": "this test's own examples",
}

CLIMB = re.compile(r"(?<![\w.])((?:\.\./)+[\w.{}-][\w./{}-]*)")
CAPITAL_DOC = re.compile(r"(?<![\w/.-])([\w./-]*/)?([A-Z][A-Z0-9_-]*\.md)\b")
DOCS_PATH = re.compile(r"(?<![\w/.-])(docs/[\w./-]+\.md)\b")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".npz", ".pt", ".gz", ".zst", ".pdf", ".woff", ".woff2"}


# what a checkout without git holds besides the project (the folders .gitignore names, and tools' caches):
# at the top, and anywhere
GENERATED_TOP = {".git", "results", "resources", ".snakemake", ".venv", ".pytest_cache", ".ruff_cache"}
GENERATED = {"__pycache__", ".ipynb_checkpoints", ".quarto", "_site"}


def project_files() -> list[str]:
    """Tracked files and untracked ones git does not ignore, relative to the repository; outside a git
    checkout, every file but the generated ones."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        paths = (p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file())
        return sorted(
            str(p)
            for p in paths
            if p.parts[0] not in GENERATED_TOP and not GENERATED & set(p.parts) and ".egg-info" not in str(p)
        )
    return sorted({p for p in out.split("\0") if p and (ROOT / p).is_file()})


def text(path: str) -> str | None:
    if Path(path).suffix.lower() in BINARY_SUFFIXES:
        return None
    try:
        return (ROOT / path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def problems(path: str, content: str, files: set[str]) -> list[str]:
    """Every reference in ``content`` (the text of ``path``) that points outside the repository."""
    found = []
    folder = (ROOT / path).parent
    basenames = {Path(f).name for f in files}
    for number, line in enumerate(content.splitlines(), 1):
        for ref in CLIMB.findall(line):
            if not inside(folder / ref):
                found.append(f"{path}:{number}: '{ref}' climbs out of the repository")
        for prefix, name in CAPITAL_DOC.findall(line):
            if prefix and prefix.startswith("../"):
                continue  # checked as a climbing path above
            if (prefix + name) not in files and name not in basenames:
                found.append(f"{path}:{number}: '{prefix}{name}' is not a file of the repository")
        for ref in DOCS_PATH.findall(line):
            if ref not in files:
                found.append(f"{path}:{number}: '{ref}' is not a file of the repository")
        if path == "README.md" or path.startswith("docs/"):
            for target in MARKDOWN_LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target) or target.startswith("results/"):
                    continue  # a URL, an anchor or a generated file
                local = target.split("#", 1)[0]
                if local and not ((folder / local).exists() and inside(folder / local)):
                    found.append(f"{path}:{number}: link '{target}' does not resolve to a file of the repository")
    return found


def test_the_check_finds_references_outside():
    files = {"README.md", "docs/design.md", "src/a.py"}
    bad = (
        "See `../shared/DESIGN.md`.\nDESIGN.md, 'Likelihood accounting'\nsee docs/missing.md\n"
        "[notes](docs/nowhere.md)\nenv: ../../../environment.yml\n"
    )
    found = problems("README.md", bad, files)
    assert [f.split(": ", 1)[1] for f in found] == [
        "'../shared/DESIGN.md' climbs out of the repository",
        "'DESIGN.md' is not a file of the repository",
        "'docs/missing.md' is not a file of the repository",
        "'docs/nowhere.md' is not a file of the repository",
        "link 'docs/nowhere.md' does not resolve to a file of the repository",
        "'../../../environment.yml' climbs out of the repository",
    ]
    good = "See docs/design.md and [the guide](docs/design.md); results/tables/x.md; ../results/a.ipynb\n"
    assert problems("report/x.qmd", good, files) == []


def test_no_file_points_outside_the_repository():
    files = project_files()
    assert "docs/design.md" in files and "docs/adding.md" in files
    found = []
    for path in files:
        if path in DELIBERATE:
            continue
        content = text(path)
        if content is None:
            continue
        issues = problems(path, content, set(files))
        found += issues
    assert not found, (
        "references to files outside the repository (the design notes are docs/design.md):\n  " + "\n  ".join(found)
    )
