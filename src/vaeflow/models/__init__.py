"""The study's density models: a registry read from the model modules themselves.

A model is one module of this package, ``vaeflow/models/<name>.py``, whose config name is the
module's name and whose model class is the module's top-level class that sets ``label`` (its
name on the site) in its own body. Nothing else lists the models: adding a module adds a model.

The registry is read from the modules' source (:func:`registry`; :class:`ModelCard`: the
class's literal class attributes, inherited within this package, and its constructor's
options), so the workflow can ask a model's facts — its name, its label, whether it reports a
bound — while it plans jobs, without importing torch (planning should not pay for torch, as it
does not for :mod:`vaeflow.data`). :data:`MODELS` (name → class) imports them on first use.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vaeflow.models.base import DensityModel

    MODELS: dict[str, type[DensityModel]]

PACKAGE_DIR = Path(__file__).resolve().parent
#: a constructor default that is not a literal (the registry knows the option, not its value)
NOT_LITERAL = object()


@dataclass(frozen=True)
class ModelCard:
    """What the source says of one model, without importing it.

    ``facts``: the literal class attributes of the model class and of its bases in this package
    (the nearest definition wins, as in Python's attribute lookup); ``options``: the keyword
    options of its constructor (everything after ``levels``) and their defaults.
    """

    name: str
    module: str
    cls: str
    facts: Mapping[str, Any]
    options: Mapping[str, Any]

    @property
    def label(self) -> str:
        """The model as the site names it (``Real NVP``)."""
        return self.facts["label"]

    @property
    def prose_name(self) -> str:
        """The model as a sentence names it (``the VAE``; a flow by its label)."""
        return self.facts.get("prose_name") or self.label

    @property
    def latent_kind(self) -> str:
        return self.facts.get("latent_kind", "flow")

    def reports_bound(self, image: bool) -> bool:
        """Whether a run of this model on images (``image``) or on real vectors reports a bound
        (:meth:`vaeflow.models.base.DensityModel.reports_bound` of its instances)."""
        return bound_reported(bool(self.facts["exact"]), bool(self.facts.get("bound_needs_levels")), image)

    def fact(self, name: str) -> Any:
        """A literal class attribute (a capability) of the model, as its class has it."""
        if name not in self.facts:
            raise KeyError(f"model {self.name!r} ({self.module}.py) sets no literal class attribute {name!r}")
        return self.facts[name]


def bound_reported(exact: bool, bound_needs_levels: bool, image: bool) -> bool:
    """A model reports a bound where it is not exact; a bound that comes from dequantising grey
    levels (``bound_needs_levels``: Flow++'s) exists on images only, and on real vectors the model
    is exact."""
    return not exact and (image or not bound_needs_levels)


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _literal(node: ast.expr | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else NOT_LITERAL
    except ValueError:
        return NOT_LITERAL


@dataclass
class _ClassSource:
    module: str
    bases: list[str]
    facts: dict[str, Any]
    options: dict[str, Any] | None  # None: no __init__ of its own


def _read_class(module: str, node: ast.ClassDef) -> _ClassSource:
    facts: dict[str, Any] = {}
    options = None
    for item in node.body:
        if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
            value = _literal(item.value)
            if value is not NOT_LITERAL:
                facts[item.targets[0].id] = value
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None:
            value = _literal(item.value)
            if value is not NOT_LITERAL:
                facts[item.target.id] = value
        elif isinstance(item, ast.FunctionDef) and item.name == "__init__":
            args = item.args
            positional = args.posonlyargs + args.args
            defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
            options = {
                a.arg: _literal(d)
                for a, d in zip(positional, defaults)
                if a.arg not in ("self", "data_shape", "levels")
            }
            options.update({a.arg: _literal(d) for a, d in zip(args.kwonlyargs, args.kw_defaults)})
    return _ClassSource(module, [_base_name(b) for b in node.bases], facts, options)


@functools.cache
def _sources() -> dict[str, dict[str, _ClassSource]]:
    """module name -> {class name: its source facts}, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found[path.stem] = {n.name: _read_class(path.stem, n) for n in tree.body if isinstance(n, ast.ClassDef)}
    return found


def _lineage(module: str, cls: str, classes: dict[str, dict[str, _ClassSource]]) -> list[_ClassSource]:
    """The class and its bases in this package, nearest first (depth-first, left to right)."""
    by_name: dict[str, list[_ClassSource]] = {}
    for defs in classes.values():
        for name, source in defs.items():
            by_name.setdefault(name, []).append(source)
    order, stack = [], [classes[module][cls]]
    while stack:
        source = stack.pop(0)
        if source in order:
            continue
        order.append(source)
        bases = []
        for base in source.bases:
            candidates = by_name.get(base, [])
            local = [c for c in candidates if c.module == source.module]
            chosen = local or candidates
            if len(chosen) > 1:
                raise ValueError(f"vaeflow.models: base class {base!r} of {cls} is defined in several modules")
            bases.extend(chosen)
        stack = bases + stack
    return order


@functools.cache
def registry() -> Mapping[str, ModelCard]:
    """Every model of the package by config name, in the site's order: the VAEs first, then the
    flows, each by the year of its paper (``year``), then by name."""
    classes = _sources()
    cards = []
    for module, defs in classes.items():
        marked = [name for name, source in defs.items() if "label" in source.facts]
        if not marked:
            continue
        if len(marked) > 1:
            raise ValueError(
                f"src/vaeflow/models/{module}.py: classes {', '.join(marked)} all set `label`; a model module "
                "holds one model class (the one that sets `label`), so move the others to a module of their own"
            )
        lineage = _lineage(module, marked[0], classes)
        facts: dict[str, Any] = {}
        for source in reversed(lineage):
            facts.update(source.facts)
        options = next((s.options for s in lineage if s.options is not None), {})
        for required in ("exact", "year"):
            if required not in facts:
                raise ValueError(
                    f"src/vaeflow/models/{module}.py: model class {marked[0]} (or a base) must set `{required}` "
                    "as a literal class attribute"
                )
        cards.append(ModelCard(module, module, marked[0], MappingProxyType(facts), MappingProxyType(options)))
    cards.sort(key=lambda c: (c.latent_kind != "vae", c.facts["year"], c.name))
    return MappingProxyType({card.name: card for card in cards})


def __getattr__(name: str) -> Any:
    if name == "MODELS":
        models = globals()["MODELS"] = {key: _load(card.module, card.cls) for key, card in registry().items()}
        return models
    if name == "DensityModel":
        return _load("base", name)
    for card in registry().values():
        if card.cls == name:
            return _load(card.module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load(module: str, name: str) -> Any:
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def model_options(cls: type[DensityModel]) -> dict[str, Any]:
    """Keyword options of a model's constructor and their defaults (everything after ``levels``)."""
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name: p.default
        for name, p in parameters.items()
        if name not in ("self", "data_shape", "levels") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def build_model(
    name: str, data_shape: tuple[int, ...], levels: int | None, options: Mapping[str, Any] | None = None
) -> DensityModel:
    """Instantiate ``MODELS[name](data_shape, levels, **options)``, checking the name and option keys."""
    models = globals().get("MODELS") or __getattr__("MODELS")
    if name not in models:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(models))}")
    cls = models[name]
    options = dict(options or {})
    accepted = model_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"accepted options: {', '.join(sorted(accepted))}"
        )
    return cls(tuple(data_shape), levels, **options)


__all__ = ["MODELS", "DensityModel", "ModelCard", "build_model", "model_options", "registry"]
