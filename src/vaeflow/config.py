"""The study configuration: reading and validating it, and per-run settings.

:func:`validate_config` makes sure that a study which passes does not fail later, inside a
job, for a reason the configuration already shows. In order:

1. every number is finite (``.nan`` and ``.inf`` pass JSON Schema's ranges);
2. ``config/schema.yaml``: types, ranges, closed mappings (a misspelt key is named, with the
   allowed key it most resembles); defaults are filled in;
3. what the schema cannot know: each dataset's options against its data, each multi-scale
   model's scale count against each image dataset's example shape (the rule the model's
   constructor applies, :mod:`vaeflow.models.multiscale`), the training batch size against
   each training split (:func:`vaeflow.data.example_shape`, :func:`vaeflow.data.split_sizes`,
   known without loading any data), a training budget for every dataset;
4. ``device: cuda`` against this machine (the only check that imports torch, and only then:
   planning the workflow stays torch-free).

Every message is one line that names the file (and line) the offending key is in, the key,
its value, and what to do. The files are those the study was read from: the ``--configfile``
paths, else ``config/config.yaml`` (:func:`read_config_files`, which also names the line and
column of a YAML syntax error). Snakemake parses ``--configfile`` files itself before the
Snakefile runs, and its message for a syntax error names neither file nor line; for that
case ``python -m vaeflow.config FILE`` checks a file and names both.

Each training run is described by a *run config*: the resolved settings of one
(dataset, model, seed). It holds only that model's block and that dataset's options,
so a change to one model's configuration changes only that model's run configs (and
Snakemake reruns only its jobs).
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

# libyaml's loaders where PyYAML has them (8x faster: planning reads the schema every time)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_FULL_LOADER = getattr(yaml, "CFullLoader", yaml.FullLoader)  # what Snakemake reads YAML with (through yte)

DEFAULT_CONFIG = "config/config.yaml"
SCHEMA = "config/schema.yaml"
YAML_ADVICE = (
    "fix the YAML there (indent with spaces, not tabs; close every [ and {; put quotes around text "
    "that holds ': ' or ' #' or starts with a character YAML reserves, such as * & ! | > % @ `)"
)


class ConfigError(ValueError):
    """The study configuration cannot be read, does not follow config/schema.yaml, or does not fit its data."""


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ConfigFile:
    """One file a study configuration was read from: its name as shown, content and YAML node tree."""

    name: str
    data: Mapping[str, Any]
    node: yaml.Node | None = None

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line (1-based) of the key or list item at ``path``; None where it is not in the file."""
        node, line = self.node, None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                found = next(
                    ((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None
                )
                if found is None:
                    return None
                line, node = found[0].start_mark.line + 1, found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return None
        return line


def shown_path(path: str | Path) -> str:
    """``path`` relative to the working directory where it lies below it (as a user typed it), else absolute."""
    relative = os.path.relpath(os.path.abspath(path))
    return relative if not relative.startswith(os.pardir) else os.path.abspath(path)


def read_config_file(path: str | Path) -> ConfigFile:
    """Read a study configuration as Snakemake does (JSON, else YAML); a syntax error names the file,
    line and column and says what to do."""
    name = shown_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"study configuration {name} not found; give an existing file with --configfile "
            f"(e.g. --configfile config/smoke.yaml) or restore {DEFAULT_CONFIG}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read study configuration {name}: {exc}; make it a readable UTF-8 text file"
        ) from None
    node = None
    try:
        data = json.loads(text)
    except ValueError:
        loader = _FULL_LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError:
            try:  # PyYAML's own parser words the problem more exactly (it names a tab, say) than libyaml's
                yaml.load(text, Loader=yaml.FullLoader)
            except yaml.MarkedYAMLError as exact:
                exc = exact
            raise ConfigError(_yaml_error(name, exc)) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"study configuration {name} is not valid YAML: {exc}; {YAML_ADVICE}") from None
        finally:
            loader.dispose()
    else:
        try:
            node = yaml.compose(text, Loader=_SAFE_LOADER)  # for line numbers only
        except yaml.YAMLError:
            pass
    if not isinstance(data, dict):
        held = "nothing" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"study configuration {name} holds {held}, not a mapping of keys to values; "
            f"write it as keys at the top level (seeds:, datasets:, models:, training:, evaluation:), "
            f"as {DEFAULT_CONFIG} does"
        )
    return ConfigFile(name, data, node)


def _yaml_error(name: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
    problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
    context = ""
    if exc.context and exc.problem:
        context = f" ({' '.join(exc.context.split())}"
        if exc.context_mark and exc.context_mark is not mark:
            context += f" that starts at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        context += ")"
    return f"study configuration {name} is not valid YAML: at {where}: {problem}{context}; {YAML_ADVICE}"


def read_config_files(paths: Sequence[str | Path]) -> list[ConfigFile]:
    """Read each file (:func:`read_config_file`): the ``--configfile`` paths, or the default study."""
    return [read_config_file(path) for path in paths]


def merged(files: Sequence[ConfigFile]) -> dict[str, Any]:
    """The files' contents merged as Snakemake merges ``--configfile`` files: later keys win, mappings merge."""

    def update(into: dict[str, Any], new: Mapping[str, Any]) -> None:
        for key, value in new.items():
            if isinstance(value, Mapping) and isinstance(into.get(key), dict):
                update(into[key], value)
            else:
                into[key] = copy.deepcopy(value)

    out: dict[str, Any] = {}
    for file in files:
        update(out, file.data)
    return out


class _Sources:
    """Where each key of a merged configuration came from: the last file (or ``--config``) that holds it."""

    def __init__(self, files: Sequence[ConfigFile], overrides: Mapping[str, Any] | None, label: str) -> None:
        self.files = list(files) + ([ConfigFile("--config", overrides)] if overrides else [])
        self.label = label

    def __call__(self, path: Sequence[str | int]) -> str:
        for length in range(len(path), 0, -1):
            prefix = path[:length]
            for file in reversed(self.files):
                if _holds(file.data, prefix):
                    line = file.line(prefix)
                    return f"{file.name}, line {line}" if line else file.name
        return " + ".join(f.name for f in self.files) or self.label


def _holds(data: Any, path: Sequence[str | int]) -> bool:
    for part in path:
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _key(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# --------------------------------------------------------------------------- validation


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


def _closest(word: Any, choices: Sequence[str]) -> str | None:
    if not isinstance(word, str):
        return None
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _non_finite(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], float]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*path, index))


def _schema_error(errors: list[ValidationError], where: _Sources) -> str:
    """One message for the most telling error: a key the schema does not know comes first, as a
    misspelt key also shows up as a missing one."""
    unknown = [
        e
        for e in errors
        if e.validator == "additionalProperties"
        and e.validator_value is False
        and isinstance(e.instance, dict)
        and isinstance(e.schema, dict)
        and set(e.instance) - set(e.schema.get("properties", {}))
    ]
    error = best_match(unknown) if unknown else best_match(errors)
    path = tuple(error.absolute_path)
    if error in unknown:
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        name = extra[0]
        missing = sorted(
            {
                m
                for e in errors
                if e.validator == "required" and tuple(e.absolute_path) == path
                for m in e.validator_value
                if m not in e.instance
            }
        )
        guess = _closest(name, missing) or _closest(name, allowed)
        hint = f"; did you mean {guess!r}?" if guess else ""
        if guess and guess in missing:
            hint += f" ({guess!r} is required and missing)"
        others = f" (also unknown here: {', '.join(map(repr, extra[1:]))})" if len(extra) > 1 else ""
        return (
            f"invalid study configuration {where((*path, name))}: at '{_key(path)}': unknown key {name!r}{hint}"
            f"{others}. Rename or remove it there; allowed keys here: {', '.join(allowed)}"
        )
    message = error.message
    fix = f"Fix it there (see {SCHEMA})"
    if error.validator == "required":
        fix = f"Add it there (see {SCHEMA} for what it means)"
    elif error.validator == "enum" and isinstance(error.validator_value, list):
        subset = isinstance(error.schema, dict) and error.schema.get("title")
        guess = None if subset else _closest(error.instance, [v for v in error.validator_value if isinstance(v, str)])
        if guess:
            message += f"; did you mean {guess!r}?"
        elif subset:  # a named subset of the model or dataset names (config/schema.yaml $defs)
            message += f" (the {' '.join(str(subset).split())})"
    elif error.validator == "propertyNames":
        names = error.schema.get("propertyNames", {}).get("enum") if isinstance(error.schema, dict) else None
        if names:
            message += f"; allowed names here: {', '.join(names)}"
    elif isinstance(error.schema, dict) and error.schema.get("description"):
        fix += f"; {_key(path)}: {' '.join(str(error.schema['description']).split())}"
    return (
        f"invalid study configuration {where(path)}: at '{_key(path)}': "
        f"{message}{'' if message.endswith('?') else '.'} {fix}."
    )


def validate_config(
    config: dict[str, Any],
    schema_path: str | Path,
    source: str = "",
    *,
    files: Sequence[ConfigFile] = (),
    overrides: Mapping[str, Any] | None = None,
    check_device: bool = True,
) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it.

    ``files`` are the files it was read from (in the order they were merged) and ``overrides``
    the values given with ``--config``: messages name the one that holds the offending key.
    Without files, messages name ``source``. Raises :class:`ConfigError`, one line.
    """
    where = _Sources(files, overrides, source or "(config)")
    for path, value in _non_finite(config):
        spelt = ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        raise ConfigError(
            f"invalid study configuration {where(path)}: at '{_key(path)}': {value} ({spelt} in YAML) is not a finite "
            f"number, and no setting of a study takes one. Give a finite number there (see {SCHEMA} for its range)."
        )
    schema = load_schema(schema_path)
    validator = _with_defaults(Draft202012Validator)(schema)
    errors = list(validator.iter_errors(config))
    if errors:
        raise ConfigError(_schema_error(errors, where))
    _check_model_options(config, where)
    _check_against_data(config, where)
    _apply_logit_alpha(config, where)
    if check_device:
        _check_device(config, where)
    return config


def load_schema(schema_path: str | Path) -> dict[str, Any]:
    """The schema, with the models filled in from their registry (:func:`vaeflow.models.registry`,
    read from their modules: a new model module is a new name): in ``$defs``, ``model_name`` is one
    of them, ``completion_model`` one that can complete images and ``bound_model`` one whose
    likelihood on images is a bound; under ``properties.models``, each model's block
    (``$defs/model_block``, its options against ``$defs/<name>_options`` where there is one)."""
    from vaeflow.models import registry

    schema = yaml.load(Path(schema_path).read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    cards = registry()
    subsets = {
        "model_name": list(cards),
        "completion_model": [name for name, card in cards.items() if card.facts.get("can_complete", True)],
        "bound_model": [name for name, card in cards.items() if card.reports_bound(image=True)],
    }
    defs = schema["$defs"]
    defs["model_name"]["enum"] = subsets["model_name"]
    for name in ("completion_model", "bound_model"):
        defs[name]["allOf"][1]["enum"] = subsets[name]
    blocks = schema["properties"]["models"]["properties"]
    for name in cards:
        options = {"$ref": f"#/$defs/{name}_options"} if f"{name}_options" in defs else {"type": "object"}
        blocks[name] = {
            "$ref": "#/$defs/model_block",
            "properties": {"options": options, "dataset_options": {"type": "object", "additionalProperties": options}},
        }
    return schema


def _check_model_options(config: dict[str, Any], where: _Sources) -> None:
    """Every option a model block sets is one its constructor takes (the registry reads them from the
    model's source); the model checks the values when it is built."""
    from vaeflow.models import registry

    for model, block in config["models"].items():
        accepted = registry()[model].options
        places = [(("models", model, "options"), block.get("options") or {})]
        places += [
            (("models", model, "dataset_options", dataset), options)
            for dataset, options in (block.get("dataset_options") or {}).items()
        ]
        for path, options in places:
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                guess = _closest(unknown[0], sorted(accepted))
                raise ConfigError(
                    f"invalid study configuration {where(path)}: at '{_key(path)}': {model} has no option "
                    f"{unknown[0]!r}{f' (did you mean {guess!r}?)' if guess else ''}; its options are "
                    f"{', '.join(sorted(accepted))}"
                )


def _apply_logit_alpha(config: dict[str, Any], where: _Sources) -> None:
    """Give the study's per-dataset ``logit_alpha`` to every model whose options take one.

    The value lands in ``models.<m>.dataset_options.<dataset>.logit_alpha`` (so each run's settings,
    and its run key, carry it); a model whose own options set another value for that dataset is an
    error, so the value lives in one place. Validating the result again changes nothing.
    """
    from vaeflow.models import registry

    for dataset, alpha in (config.get("logit_alpha") or {}).items():
        for model, block in config["models"].items():
            if "logit_alpha" not in registry()[model].options:
                continue
            own = {**block.get("options", {}), **(block.get("dataset_options") or {}).get(dataset, {})}
            if "logit_alpha" in own and own["logit_alpha"] != float(alpha):  # equal: validated before (idempotent)
                path = ("models", model, "options", "logit_alpha")
                raise ConfigError(
                    f"invalid study configuration {where(path)}: models.{model} sets logit_alpha "
                    f"{own['logit_alpha']} and so does 'logit_alpha.{dataset}' ({alpha}); the study's per-dataset "
                    f"value applies to every flow, so remove logit_alpha from models.{model}"
                )
            block.setdefault("dataset_options", {}).setdefault(dataset, {})["logit_alpha"] = float(alpha)


def _check_against_data(config: dict[str, Any], where: _Sources) -> None:
    """Dataset options, multi-scale counts, batch sizes and training budgets: what the schema cannot know."""
    from vaeflow.data import example_shape, split_sizes
    from vaeflow.models.multiscale import SCALE_RULES

    shapes, sizes = {}, {}
    for dataset, options in config["datasets"].items():
        try:
            shapes[dataset], sizes[dataset] = example_shape(dataset, options), split_sizes(dataset, options)
        except ValueError as exc:
            raise ConfigError(
                f"invalid study configuration {where(('datasets', dataset))}: at 'datasets.{dataset}': "
                f"{' '.join(str(exc).split())}"
            ) from None

    for model, block in config["models"].items():
        left_out = block.get("left_out") or {}
        missing = [d for d in config["datasets"] if d not in block["steps"] and d not in left_out]
        if missing:
            raise ConfigError(
                f"invalid study configuration {where(('models', model, 'steps'))}: at 'models.{model}.steps': no "
                f"training steps for dataset(s) {', '.join(map(repr, missing))}. Add {missing[0]}: <steps> there, or "
                f"leave the model out of it with models.{model}.left_out: "
                f"{{{missing[0]}: <the reason the site gives>}}."
            )
        both = [d for d in left_out if d in block["steps"]]
        if both:
            raise ConfigError(
                f"invalid study configuration {where(('models', model, 'left_out', both[0]))}: at "
                f"'models.{model}.left_out': {both[0]!r} is also in models.{model}.steps; a model either trains on a "
                f"dataset or is left out of it. Remove it from one of the two."
            )
        teacher = (block.get("distill") or {}).get("teacher")
        if teacher is not None and teacher not in config["models"]:
            guess = _closest(teacher, list(config["models"]))
            raise ConfigError(
                f"invalid study configuration {where(('models', model, 'distill', 'teacher'))}: at "
                f"'models.{model}.distill.teacher': {teacher!r} is not a model of this study"
                f"{f'; did you mean {guess!r}?' if guess else '.'} Name one of {', '.join(config['models'])} there, "
                f"or remove the distill block."
            )

    # each multi-scale model's scale count, on every image dataset, by the key that sets it
    for model, rule in SCALE_RULES.items():
        if model not in config["models"]:
            continue
        block = config["models"][model]
        uses: dict[tuple[str | int, ...], list[str]] = {}
        for dataset, shape in shapes.items():
            if len(shape) != 3:
                continue
            if rule.option in block.get("dataset_options", {}).get(dataset, {}):
                key: tuple[str | int, ...] = ("models", model, "dataset_options", dataset, rule.option)
            else:
                key = ("models", model, "options", rule.option)
            uses.setdefault(key, []).append(dataset)
        for key, datasets in uses.items():
            value = _get(config, key, rule.default)
            bad = [d for d in datasets if not rule.fits(value, *shapes[d][1:])]
            if not bad:
                continue
            worst = min(bad, key=lambda d: rule.largest(*shapes[d][1:]))
            largest = min(rule.largest(*shapes[d][1:]) for d in datasets)
            shown = f"{value}" if _holds(config, key) else f"unset, so the default {value},"
            advice = (
                f"Set it to at most {largest}, the largest value that fits every dataset it applies to "
                f"({', '.join(datasets)})"
                if largest
                else f"No value fits: {rule.model} needs {rule.needs}"
            )
            if key[2] == "options" and len(datasets) > 1:
                advice += (
                    f", or give dataset {worst!r} its own value as models.{model}.dataset_options.{worst}.{rule.option}"
                )
            raise ConfigError(
                f"invalid study configuration {where(key)}: at '{_key(key)}': {shown} does not fit dataset {worst!r}, "
                f"whose examples have shape {shapes[worst]}: in {rule.model}, {rule.why(value)}. {advice}."
            )

    # the batch size of every run against its training split (a larger one would silently train full-batch)
    limits: dict[tuple[str | int, ...], list[tuple[int, str]]] = {}
    for model, block in config["models"].items():
        distilled = set((block.get("distill") or {}).get("datasets", ()))
        key = (
            ("models", model, "training", "batch_size")
            if "batch_size" in block.get("training", {})
            else ("training", "batch_size")
        )
        for dataset in config["datasets"]:
            if dataset not in distilled:  # a distilled student trains on its own samples, not on the split
                limits.setdefault(key, []).append((sizes[dataset]["train"], dataset))
    for key, splits in limits.items():
        batch_size = _get(config, key, None)
        n_train, dataset = min(splits)
        if batch_size is not None and batch_size > n_train:
            options = config["datasets"][dataset] or {}
            with_options = f" with {', '.join(f'{k}: {v}' for k, v in options.items())}" if options else ""
            raise ConfigError(
                f"invalid study configuration {where(key)}: at '{_key(key)}': {batch_size} is larger than the training "
                f"split of dataset {dataset!r}{with_options} ({n_train} examples), so every step would see the whole "
                f"split and training would silently be full-batch. Set it to at most {n_train} (the smallest training "
                f"split it applies to), or give that dataset more training examples."
            )


def _get(config: Mapping[str, Any], path: Sequence[str | int], default: Any) -> Any:
    data: Any = config
    for part in path:
        if not isinstance(data, Mapping) or part not in data:
            return default
        data = data[part]
    return data


def _check_device(config: dict[str, Any], where: _Sources) -> None:
    """``device: cuda`` on a machine whose torch sees no GPU fails here, not inside a job; ``auto`` and
    ``cpu`` work anywhere and are not checked (so torch is not imported)."""
    device = config.get("device", "auto")
    if device in ("auto", "cpu"):
        return
    from vaeflow.training.seeding import resolve_device  # what every job resolves its device with

    try:
        resolve_device(device)
    except RuntimeError:
        import torch

        raise ConfigError(
            f"invalid study configuration {where(('device',))}: at 'device': {device!r}, but torch on this machine "
            f"sees no CUDA GPU (torch {torch.__version__}, "
            f"{'built for CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}). "
            f"Set device: auto there (CUDA wherever a job finds a GPU, CPU otherwise; on a cluster, jobs on GPU nodes "
            f"get their GPU) or device: cpu, or plan the study on a machine with a GPU."
        ) from None


def load_config(path: str | Path, schema_path: str | Path, *, check_device: bool = True) -> dict[str, Any]:
    """Read a study configuration file and validate it."""
    file = read_config_file(path)
    return validate_config(merged([file]), schema_path, files=[file], check_device=check_device)


def trains_on(config: dict[str, Any], model: str, dataset: str) -> bool:
    """Whether the study trains ``model`` on ``dataset`` (not in the model's ``left_out``)."""
    return dataset in config["datasets"] and dataset not in (config["models"][model].get("left_out") or {})


def left_out_runs(config: dict[str, Any]) -> list[dict[str, str]]:
    """Every (model, dataset) the study leaves out, with the config's reason."""
    return [
        {"model": model, "dataset": dataset, "reason": " ".join(reason.split())}
        for model, block in config["models"].items()
        for dataset, reason in (block.get("left_out") or {}).items()
        if dataset in config["datasets"]
    ]


def run_config(config: dict[str, Any], dataset: str, model: str, seed: int) -> dict[str, Any]:
    """The resolved settings of one training run (JSON-serialisable)."""
    if dataset not in config["datasets"]:
        raise ConfigError(
            f"dataset {dataset!r} is not in the study configuration (has: {', '.join(config['datasets'])})"
        )
    if model not in config["models"]:
        raise ConfigError(f"model {model!r} is not in the study configuration (has: {', '.join(config['models'])})")
    block = config["models"][model]
    if not trains_on(config, model, dataset):
        raise ConfigError(
            f"models.{model} is left out of dataset {dataset!r} (models.{model}.left_out): "
            f"{(block.get('left_out') or {}).get(dataset)}; it has no run there"
        )
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
    budget = config.get("parameter_budget", {}).get(dataset)
    return {
        **({"parameter_budget": int(budget)} if budget else {}),  # absent without one: old run keys stay valid
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


def probe_settings(
    config: dict[str, Any], probe: str, notebook_keys: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The ``analyses.<probe>`` block without the keys only its notebook reads, plus the
    evaluation seed (every probe is seeded)."""
    block = {k: v for k, v in config.get("analyses", {}).get(probe, {}).items() if k not in notebook_keys}
    return {"seed": config["evaluation"]["seed"], **block}


def study_analysis_settings(
    analysis: str, config_path: str | Path = "config/config.yaml", schema_path: str | Path = "config/schema.yaml"
) -> dict[str, Any]:
    """The ``analyses.<analysis>`` block of a study config file (validated, defaults filled):
    what a notebook run standalone uses when it is given no ``settings``."""
    return analysis_settings(load_config(config_path, schema_path), analysis)


def analysis_settings(config: dict[str, Any], analysis: str) -> dict[str, Any]:
    """The ``analyses.<analysis>`` block a notebook receives as its ``settings`` parameter."""
    return dict(config.get("analyses", {}).get(analysis, {}))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vaeflow.config FILE...``: check study configuration files (merged in order, as
    ``--configfile`` merges them), naming the file, line and column of what is wrong."""
    paths = list(sys.argv[1:] if argv is None else argv) or [DEFAULT_CONFIG]
    try:
        files = read_config_files(paths)
        validate_config(merged(files), SCHEMA, files=files)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{' + '.join(f.name for f in files)}: a valid study configuration")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
