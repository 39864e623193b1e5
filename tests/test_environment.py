"""The set-up stays true: environment.yml agrees with pyproject, CI runs the README's test command."""

import re
import tomllib

import yaml


def _pins(requirements):
    return dict(re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", r).groups() for r in requirements)


def test_every_dependency_is_pinned_exactly(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    assert all("==" in r for r in requirements), "pin every dependency with =="
    assert _pins(requirements)["torch"] == "2.13.0"


def test_environment_yml_has_the_same_pins_plus_quarto(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((root / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == wanted
    assert "quarto" in conda


def test_ci_runs_the_readme_test_command(root):
    readme = (root / "README.md").read_text()
    commands = re.findall(r"```(?:bash|sh)\n(.*?)\n```", readme, re.S)
    test_command = next(c for c in commands if "pytest" in c).strip()
    assert test_command in (root / ".ci/run").read_text()
    assert any("snakemake" in c for c in commands), "the README gives the main command"
