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
