"""The source files a job depends on are found by following imports."""

from vaeflow.provenance import hash_files, source_files


def test_model_sources_follow_imports_but_not_other_models(root):
    files = {p.name for p in source_files("vaeflow.models.realnvp", root / "src")}
    assert {"realnvp.py", "base.py", "coupling.py", "transforms.py"} <= files
    assert "vae.py" not in files and "__init__.py" not in files
    vae = {p.name for p in source_files("vaeflow.models.vae", root / "src")}
    assert "realnvp.py" not in vae and "distributions.py" in vae


def test_engine_sources_include_the_model_registry_dependencies(root):
    files = {p.relative_to(root / "src").as_posix() for p in source_files("vaeflow.training.engine", root / "src")}
    assert {"vaeflow/training/engine.py", "vaeflow/training/checkpoint.py", "vaeflow/io.py"} <= files


def test_hash_changes_with_content(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("x = 1\n")
    before = hash_files([a])
    a.write_text("x = 2\n")
    assert hash_files([a]) != before


def test_declared_outputs_read_from_source_match_the_modules():
    """The workflow plans analysis outputs from the source (no imports); they must be the
    modules' own TABLES and FIGURES."""
    import importlib

    from vaeflow.analysis import declared_outputs

    for analysis in ("likelihood", "high_frequency", "anomaly", "cost", "latents"):
        module = importlib.import_module(f"vaeflow.analysis.{analysis}")
        assert declared_outputs(analysis) == {"TABLES": tuple(module.TABLES), "FIGURES": tuple(module.FIGURES)}


def test_declared_outputs_name_a_missing_analysis():
    import pytest

    from vaeflow.analysis import declared_outputs

    with pytest.raises(ValueError, match="no analysis module"):
        declared_outputs("nonsense")


def test_planning_imports_no_heavy_libraries(root):
    """Every ``vaeflow`` import of the Snakefile and the rules files, in a fresh interpreter,
    loads neither torch nor the analysis libraries: a no-op ``snakemake -n`` must not pay
    for them (issue 6: under 3 s)."""
    import re
    import subprocess
    import sys

    sources = [root / "Snakefile", *sorted((root / "workflow" / "rules").glob("*.smk"))]
    imports = sorted(
        {m for path in sources for m in re.findall(r"^from (vaeflow[\w.]*) import", path.read_text(), re.M)}
    )
    assert "vaeflow.probes" in imports and "vaeflow.data" in imports
    heavy = ("torch", "pandas", "sklearn", "scipy", "torchdiffeq", "altair")
    code = (
        f"import importlib, sys\nfor m in {imports!r}: importlib.import_module(m)\n"
        f"print(sorted(h for h in {heavy!r} if h in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(root / "src"), "PATH": ""},
    )
    assert out.stdout.strip() == "[]", f"planning imports {out.stdout.strip()} (through {imports})"


def test_probe_registry_notebook_keys_are_config_keys(root):
    """A notebook-only key must be a key of its probe's settings block, else it filters nothing."""
    import yaml

    from vaeflow.probes import NOTEBOOK_KEYS, PROBES

    analyses = yaml.safe_load((root / "config" / "config.yaml").read_text())["analyses"]
    assert set(NOTEBOOK_KEYS) == set(PROBES)
    for probe, keys in NOTEBOOK_KEYS.items():
        assert keys <= set(analyses[probe]), (probe, keys - set(analyses[probe]))
