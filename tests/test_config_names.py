"""The schema names the study's models and datasets once (``$defs``), and every place that names one
refers to them: a misspelt name anywhere is rejected with a message naming the place."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from vaeflow.config import ConfigError, load_schema, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"
SMOKE = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text(encoding="utf-8"))


def schema() -> dict[str, Any]:
    """The schema as a study reads it: the model names filled in from the registry of models."""
    return load_schema(SCHEMA)


def put(path: tuple[str, ...], value: Any):
    """A change to a study: set ``value`` at ``path``, creating the mappings on the way."""

    def change(config: dict[str, Any]) -> None:
        for key in path[:-1]:
            config = config.setdefault(key, {})
        config[path[-1]] = value

    return change


def rename(path: tuple[str, ...], old: str, new: str):
    def change(config: dict[str, Any]) -> None:
        for key in path:
            config = config[key]
        config[new] = config.pop(old)

    return change


# every place of a study that names a model or a dataset: (change, the place the message names, the right name)
MISSPELT = {
    "models": (rename(("models",), "vae", "vea"), "'models'", "vae"),
    "models.<m>.distill.teacher": (
        put(("models", "iaf", "distill"), {"teacher": "mfa", "datasets": ["digits"]}),
        "'models.iaf.distill.teacher'",
        "maf",
    ),
    "analyses.high_frequency.slow_models": (
        put(("analyses", "high_frequency", "slow_models"), ["ffjrod"]),
        "'analyses.high_frequency.slow_models[0]'",
        "ffjord",
    ),
    "analyses.anomaly.slow_models": (
        put(("analyses", "anomaly", "slow_models"), ["ffjrod"]),
        "'analyses.anomaly.slow_models[0]'",
        "ffjord",
    ),
    "analyses.latents.slow_models": (
        put(("analyses", "latents", "slow_models"), ["ffjrod"]),
        "'analyses.latents.slow_models[0]'",
        "ffjord",
    ),
    "analyses.high_frequency.completion_models": (
        put(("analyses", "high_frequency", "completion_models"), ["realnpv"]),
        "'analyses.high_frequency.completion_models[0]'",
        "realnvp",
    ),
    "analyses.likelihood.max_k": (
        put(("analyses", "likelihood", "max_k"), {"flowp": 4}),
        "'analyses.likelihood.max_k'",
        "flowpp",
    ),
    "datasets": (put(("datasets", "mnsit"), {}), "'datasets'", "mnist"),
    "parameter_budget": (put(("parameter_budget",), {"mnsit": 1000}), "'parameter_budget'", "mnist"),
    "logit_alpha": (put(("logit_alpha",), {"mnsit": 0.05}), "'logit_alpha'", "mnist"),
    "models.<m>.steps": (put(("models", "vae", "steps", "mnsit"), 10), "'models.vae.steps'", "mnist"),
    "models.<m>.left_out": (put(("models", "vae", "left_out"), {"mnsit": "why"}), "'models.vae.left_out'", "mnist"),
    "models.<m>.dataset_options": (
        put(("models", "vae", "dataset_options"), {"mnsit": {}}),
        "'models.vae.dataset_options'",
        "mnist",
    ),
    "models.<m>.distill.datasets": (
        put(("models", "iaf", "distill"), {"teacher": "maf", "datasets": ["digts"]}),
        "'models.iaf.distill.datasets[0]'",
        "digits",
    ),
    "analyses.high_frequency.grid_dataset": (
        put(("analyses", "high_frequency", "grid_dataset"), "mnsit"),
        "'analyses.high_frequency.grid_dataset'",
        "mnist",
    ),
    "analyses.latents.figure_dataset": (
        put(("analyses", "latents", "figure_dataset"), "mnsit"),
        "'analyses.latents.figure_dataset'",
        "mnist",
    ),
    "analyses.cost.target_bpd": (
        put(("analyses", "cost", "target_bpd"), {"mnsit": 1.0}),
        "'analyses.cost.target_bpd'",
        "mnist",
    ),
    "analyses.cost.budget_s": (
        put(("analyses", "cost", "budget_s"), {"mnsit": 60.0}),
        "'analyses.cost.budget_s'",
        "mnist",
    ),
}

# names that exist but cannot do what the place asks: (change, place, the named subset)
INCAPABLE = {
    "completion_models": (
        put(("analyses", "high_frequency", "completion_models"), ["flowpp"]),
        "'analyses.high_frequency.completion_models[0]'",
        "models that can complete images",
    ),
    "max_k": (
        put(("analyses", "likelihood", "max_k"), {"realnvp": 4}),
        "'analyses.likelihood.max_k'",
        "models whose likelihood is a bound",
    ),
    "grid_dataset": (
        put(("analyses", "high_frequency", "grid_dataset"), "toy2d"),
        "'analyses.high_frequency.grid_dataset'",
        "datasets of images",
    ),
    "figure_dataset": (
        put(("analyses", "latents", "figure_dataset"), "toy2d"),
        "'analyses.latents.figure_dataset'",
        "datasets of images",
    ),
    "logit_alpha": (put(("logit_alpha",), {"toy2d": 0.05}), "'logit_alpha'", "datasets of images"),
}


def rejected(change) -> str:
    config = copy.deepcopy(SMOKE)
    change(config)
    with pytest.raises(ConfigError) as caught:
        validate_config(config, SCHEMA, "smoke.yaml", check_device=False)
    return str(caught.value)


def test_the_unchanged_study_passes():
    validate_config(copy.deepcopy(SMOKE), SCHEMA, "smoke.yaml", check_device=False)


@pytest.mark.parametrize("place", sorted(MISSPELT))
def test_a_misspelt_name_is_rejected_where_it_is(place):
    change, where, right = MISSPELT[place]
    message = rejected(change)
    assert f"at {where}:" in message, message
    assert f"did you mean {right!r}?" in message, message


@pytest.mark.parametrize("place", sorted(INCAPABLE))
def test_a_name_that_cannot_do_it_is_rejected_where_it_is(place):
    change, where, subset = INCAPABLE[place]
    message = rejected(change)
    assert f"at {where}:" in message and f"(the {subset})" in message, message


def _enums(node: Any, path: tuple[str, ...] = ()):
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list):
            yield path, node["enum"]
        for key, value in node.items():
            yield from _enums(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _enums(value, (*path, str(index)))


def test_names_are_listed_once_in_the_schema():
    """Only ``$defs`` lists model or dataset names; every other place refers to them."""
    s = schema()
    names = set(s["$defs"]["model_name"]["enum"]) | set(s["$defs"]["dataset_name"]["enum"])
    allowed = {"model_name", "dataset_name", "image_dataset_name", "completion_model", "bound_model"}
    listed = [
        "/".join(path)
        for path, values in _enums(s)
        if names & set(map(str, values)) and not (path[0] == "$defs" and path[1] in allowed)
    ]
    assert not listed, f"model or dataset names listed outside $defs (refer to #/$defs/... instead): {listed}"


def test_the_schema_names_agree_with_the_registries():
    from vaeflow.data import DATASETS, IMAGE_DATASETS
    from vaeflow.models import MODELS

    s = schema()
    defs = s["$defs"]
    assert sorted(defs["model_name"]["enum"]) == sorted(MODELS)
    # the schema's file names no model: a new model module needs no line of it
    assert "enum" not in yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))["$defs"]["model_name"]
    # one block per model of the registry; the option types and ranges are for models of the registry
    assert list(s["properties"]["models"]["properties"]) == list(MODELS)
    assert {d.removesuffix("_options") for d in defs if d.endswith("_options")} <= set(MODELS)
    assert sorted(defs["dataset_name"]["enum"]) == sorted(DATASETS)
    assert sorted(s["properties"]["datasets"]["properties"]) == sorted(DATASETS)
    images = next(part["enum"] for part in defs["image_dataset_name"]["allOf"] if "enum" in part)
    assert sorted(images) == sorted(IMAGE_DATASETS)


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml"])
def test_every_shipped_config_passes(name):
    from vaeflow.config import load_config

    load_config(ROOT / "config" / name, SCHEMA, check_device=False)


@pytest.mark.parametrize("where", ["options", "dataset_options"])
def test_an_option_the_model_does_not_take_is_rejected_by_name(where):
    """Checked against the model's constructor, read from its source, also for a model whose block the
    schema does not describe."""
    config = copy.deepcopy(SMOKE)
    block = config["models"]["realnvp"]
    if where == "options":
        block["options"]["coupling_layer"] = 4
        place = "'models.realnvp.options'"
    else:
        block.setdefault("dataset_options", {})["digits"] = {"hiden": 8}
        place = "'models.realnvp.dataset_options.digits'"
    schema_without = load_schema(SCHEMA)  # as for a model whose options have no types in the schema
    schema_without["properties"]["models"]["properties"]["realnvp"]["properties"] = {}
    from vaeflow import config as config_module

    original = config_module.load_schema
    config_module.load_schema = lambda path: copy.deepcopy(schema_without)
    try:
        with pytest.raises(ConfigError) as caught:
            validate_config(config, SCHEMA, "smoke.yaml", check_device=False)
    finally:
        config_module.load_schema = original
    message = str(caught.value)
    assert f"at {place}:" in message and "realnvp has no option" in message, message
    assert "did you mean" in message and "coupling_layers" in message, message
