"""Find components by name.

Each kind (dataset, attack, defense, target, judge) has one ``Registry``. A component registers with the
``@register`` decorator in its own module; the registry imports every module of its kind's package the first time a
name is looked up, so adding a component is one new file. Outside packages add modules through the
``mmsafe.components`` entry-point group. Nothing here imports torch: ``mmsafe --help`` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import json
import pkgutil
import re
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

_entry_points_loaded = False


class ComponentSpec(BaseModel):
    """``{name, args}``: how a component is named in YAML and stored with a run so it can be rebuilt."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def parse(cls, value: str | dict[str, Any] | ComponentSpec) -> ComponentSpec:
        """Accept ``name``, ``name:value`` (value goes to the component's first parameter), a mapping, or a ``label``
        (``name{"key": value}``), so a stored label rebuilds the same spec."""
        if isinstance(value, ComponentSpec):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        labelled = re.fullmatch(r"([^:{]+)(\{.*\})", value.strip(), re.DOTALL)
        if labelled:  # the form ``label`` writes for named arguments: name{"key":value}
            try:
                return cls(name=labelled.group(1).strip(), args=json.loads(labelled.group(2)))
            except ValueError:
                pass
        name, sep, arg = value.strip().partition(":")
        return cls(name=name.strip(), args={"_": arg} if sep else {})

    @property
    def label(self) -> str:
        """Stable text key used in the results store: same spec, same label."""
        if not self.args:
            return self.name
        if set(self.args) == {"_"}:
            return f"{self.name}:{self.args['_']}"
        return f"{self.name}{json.dumps(self.args, sort_keys=True, separators=(',', ':'))}"


def _coerce(cls: Any, value: Any) -> Any:
    """``name:value`` gives a string; convert it to the first parameter's declared type where it parses
    (``mini:false`` -> False, ``attack:16`` -> 16), else pass it on as written for the component to judge."""
    import typing

    from pydantic import TypeAdapter, ValidationError

    init = cls.__init__ if isinstance(cls, type) else cls
    if not isinstance(value, str) or init is object.__init__:
        return value
    try:
        params = [p for p in inspect.signature(init).parameters.values() if p.name not in ("self", "cls")]
        hint = typing.get_type_hints(init).get(params[0].name) if params else None
        return value if hint is None else TypeAdapter(hint).validate_python(value)
    except (ValidationError, TypeError, NameError, ValueError):
        return value


def arguments(cls: Any) -> list[str] | None:
    """The keyword arguments ``cls`` accepts, in order; None when it takes any (``**kwargs``)."""
    init = cls.__init__ if isinstance(cls, type) else cls
    params = [p for p in inspect.signature(init).parameters.values() if p.name not in ("self", "cls")]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


class UnknownComponent(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class ComponentError(ValueError):
    """A component could not be built from its spec (bad or missing arguments)."""


class Registry(Generic[T]):
    """``chain``: for kinds whose components compose (attacks, defenses), builds ``a+b`` from its built parts;
    arguments of a chain are keyed by part: ``{name: figstep+prefix-injection, args: {figstep: {steps: 4}}}``."""

    def __init__(self, kind: str, package: str, chain: Callable[[list[T]], T] | None = None) -> None:
        self.kind = kind
        self.package = package
        self.chain = chain
        self._items: dict[str, type[T]] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            existing = self._items.get(name)
            if existing is not None and existing is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice: {existing} and {cls}")
            self._items[name] = cls
            cls.registry_name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def _discover(self) -> None:
        global _entry_points_loaded
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")
        if not _entry_points_loaded:
            _entry_points_loaded = True
            for ep in importlib.metadata.entry_points(group="mmsafe.components"):
                importlib.import_module(ep.value)

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._items)

    def get(self, name: str) -> type[T]:
        self._discover()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UnknownComponent(
                f"unknown {self.kind} {name!r}; {hint}known: {', '.join(self.names()) or 'none'}"
            ) from None

    def build(self, spec: str | dict[str, Any] | ComponentSpec) -> T:
        spec = ComponentSpec.parse(spec)
        if self.chain is not None and "+" in spec.name:
            names = [n.strip() for n in spec.name.split("+")]
            unknown = set(spec.args) - set(names)
            if unknown:
                raise ComponentError(f"{self.kind} {spec.name!r}: arguments must be keyed by part name "
                                     f"({', '.join(names)}), not {', '.join(sorted(unknown))}")
            chained = self.chain([self.build({"name": n, "args": spec.args.get(n, {})}) for n in names])
            chained.spec = spec  # type: ignore[attr-defined]
            return chained
        cls = self.get(spec.name)
        args = dict(spec.args)
        positional = [_coerce(cls, args.pop("_"))] if "_" in args else []
        accepted = arguments(cls)
        unknown = sorted(set(args) - set(accepted)) if accepted is not None else []
        if unknown:
            raise ComponentError(f"{self.kind} {spec.name!r} has no argument {', '.join(map(repr, unknown))}; "
                                 f"it accepts: {', '.join(accepted) or 'no arguments'}")
        try:
            obj = cls(*positional, **args)
        except (TypeError, ValueError) as e:
            raise ComponentError(f"{self.kind} {spec.label!r}: {e}") from e
        obj.spec = spec  # type: ignore[attr-defined]
        return obj

    def describe(self, name: str) -> str:
        """First paragraph of the component's docstring, for ``mmsafe list``."""
        doc = inspect.getdoc(self.get(name)) or ""
        return " ".join(doc.split("\n\n")[0].split())
