"""The study configuration: validation against config/schema.yaml and per-run settings.

Each training run is described by a *run config*: the resolved settings of one
(dataset, model, seed). It holds only that model's block and that dataset's options,
so a change to one model's configuration changes only that model's run configs (and
Snakemake reruns only its jobs).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match


class ConfigError(ValueError):
    """The study configuration does not follow config/schema.yaml."""


def _with_defaults(validator_class: type) -> type:
    """A validator that fills ``default`` values while validating (jsonschema FAQ)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _describe(error: ValidationError, source: str) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.schema, dict):
        allowed = sorted(error.schema.get("properties", {}))
        if allowed:
            message += f"; allowed keys here: {', '.join(allowed)}"
    elif error.validator == "propertyNames":
        names = error.schema.get("propertyNames", {}).get("enum") if isinstance(error.schema, dict) else None
        if names:
            message += f"; allowed names here: {', '.join(names)}"
    return f"invalid study configuration {source}: at '{where}': {message}. Fix it there (see config/schema.yaml)."


def validate_config(config: dict[str, Any], schema_path: str | Path, source: str = "") -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it.

    Raises :class:`ConfigError` with one message that names the offending key.
    """
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    validator = _with_defaults(Draft202012Validator)(schema)
    error = best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(_describe(error, source or "(config)"))
    return config


def load_config(path: str | Path, schema_path: str | Path) -> dict[str, Any]:
    """Read a YAML study configuration and validate it."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read study configuration {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"study configuration {path} must be a mapping of keys to values")
    return validate_config(config, schema_path, source=str(path))


def run_config(config: dict[str, Any], dataset: str, model: str, seed: int) -> dict[str, Any]:
    """The resolved settings of one training run (JSON-serialisable)."""
    if dataset not in config["datasets"]:
        raise ConfigError(f"dataset {dataset!r} is not in the study configuration (has: {', '.join(config['datasets'])})")
    if model not in config["models"]:
        raise ConfigError(f"model {model!r} is not in the study configuration (has: {', '.join(config['models'])})")
    block = config["models"][model]
    if dataset not in block["steps"]:
        raise ConfigError(f"models.{model}.steps has no budget for dataset {dataset!r}; add one")
    options = {**block.get("options", {}), **block.get("dataset_options", {}).get(dataset, {})}
    training = {**config["training"], **block.get("training", {}), "steps": block["steps"][dataset]}
    distill = block.get("distill")
    if distill and dataset in distill["datasets"]:
        teacher = distill["teacher"]
        if teacher not in config["models"]:
            raise ConfigError(f"models.{model}.distill.teacher is {teacher!r}, which is not a model of this study")
        training["teacher"] = teacher
    return {
        "dataset": dataset,
        "dataset_options": dict(config["datasets"][dataset] or {}),
        "data_seed": config.get("data_seed", 0),
        "model": model,
        "options": options,
        "training": training,
        "seed": int(seed),
    }


def evaluation_settings(config: dict[str, Any], model: str) -> dict[str, Any]:
    """The evaluation block with the model's own overrides applied."""
    return {**config["evaluation"], **config["models"][model].get("evaluation", {})}


def probe_settings(config: dict[str, Any], probe: str, notebook_keys: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The ``analyses.<probe>`` block without the keys only its notebook reads, plus the
    evaluation seed (every probe is seeded)."""
    block = {k: v for k, v in config.get("analyses", {}).get(probe, {}).items() if k not in notebook_keys}
    return {"seed": config["evaluation"]["seed"], **block}


def study_analysis_settings(analysis: str, config_path: str | Path = "config/config.yaml",
                            schema_path: str | Path = "config/schema.yaml") -> dict[str, Any]:
    """The ``analyses.<analysis>`` block of a study config file (validated, defaults filled):
    what a notebook run standalone uses when it is given no ``settings``."""
    return analysis_settings(load_config(config_path, schema_path), analysis)


def analysis_settings(config: dict[str, Any], analysis: str) -> dict[str, Any]:
    """The ``analyses.<analysis>`` block a notebook receives as its ``settings`` parameter."""
    return dict(config.get("analyses", {}).get(analysis, {}))
