"""Scan configuration: the same fields from a YAML file or CLI flags (flags win). Validated by pydantic, so a typo
in a YAML key is an error that names the key, not a silently ignored setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmsafe.registry import ComponentSpec

M = TypeVar("M", bound=BaseModel)

DEFAULT_OUT = "mmsafe-runs/scan"

# Target arguments that change speed, placement, credentials or bookkeeping but not answers: left out of the row key,
# so changing them resumes the same rows instead of starting new ones.
RUNTIME_ARGS = {"batch_size", "device", "max_concurrency", "timeout_s", "max_retries", "api_key_env", "price_in",
                "price_out"}


def identity_label(spec: ComponentSpec) -> str:
    """The spec's label without its ``RUNTIME_ARGS``: what a stored row is keyed by."""
    return ComponentSpec(name=spec.name, args={k: v for k, v in spec.args.items() if k not in RUNTIME_ARGS}).label


def parse_specs(value: Any, kind: type[ComponentSpec] = ComponentSpec) -> list[Any]:
    """``"a,b"``, ``["a", {"name": "b", "args": {...}}]`` or a single mapping -> specs of ``kind``."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(",")) if v]
    if isinstance(value, (dict, ComponentSpec)):
        value = [value]
    return [kind.parse(v.model_dump() if isinstance(v, ComponentSpec) else v) for v in value]


class TargetSpec(ComponentSpec):
    """A target of a run: a component spec and an optional ``label``, the name its rows carry in the store and the
    report (by default the spec's own label, e.g. ``reader{"max_new_tokens":48}``)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    named: str | None = Field(None, alias="label", min_length=1)

    @property
    def key(self) -> str:
        """The ``target`` of its rows: the label given, else the spec's identity label."""
        return self.named or identity_label(self)


class ScanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Several targets make a matrix: every dataset x attack x defense runs on each, one target's models at a time.
    targets: list[TargetSpec] = Field(default_factory=lambda: [TargetSpec(name="reader")])
    datasets: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="mini")])
    attacks: list[ComponentSpec] = Field(default_factory=lambda: parse_specs("none,figstep"))
    defenses: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="none")])
    # None: keywords plus the judges the attacks and datasets name as their own (a hijack's contains:<string>)
    judges: list[ComponentSpec] | None = None
    # scenario datasets (leakage, tool-misuse, ...): each adds its dataset and its judges; with no datasets named,
    # only the scenarios are scanned (see Scan)
    scenarios: list[ComponentSpec] = Field(default_factory=list)
    limit: int | None = Field(None, gt=0, description="samples per dataset, spread over categories")
    out: Path = Path(DEFAULT_OUT)
    retry_errors: bool = Field(True, description="re-run rows stored with an error")
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(None, description="a Ray cluster (ray://host:port or auto); implies executor ray")

    @model_validator(mode="before")
    @classmethod
    def _singular_keys(cls, data: Any) -> Any:
        # Accept `dataset:`/`attack:` as well as the plural; people write both.
        if isinstance(data, dict):
            data = dict(data)
            for one in ("target", "dataset", "attack", "defense", "judge", "scenario"):
                if one in data:
                    if one + "s" in data:
                        raise ValueError(f"give either {one!r} or {one + 's'!r}, not both")
                    data[one + "s"] = data.pop(one)
        return data

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, v: Any) -> list[TargetSpec]:
        specs = parse_specs(v, TargetSpec)
        if not specs:
            raise ValueError("must name at least one component")
        return specs

    @model_validator(mode="after")
    def _distinct_targets(self) -> ScanConfig:
        labels = [t.key for t in self.targets]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ValueError(f"targets: {', '.join(twice)} named twice; give each target a distinct label")
        if self.ray_address and self.executor == "local":
            if "executor" in self.model_fields_set:
                raise ValueError("ray_address needs executor: ray")
            self.executor = "ray"
        return self

    @field_validator("scenarios", mode="before")
    @classmethod
    def _scenarios(cls, v: Any) -> list[ComponentSpec]:
        return parse_specs(v)

    @field_validator("datasets", "attacks", "defenses", "judges", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> list[ComponentSpec]:
        specs = parse_specs(v)
        if not specs:
            raise ValueError("must name at least one component")
        return specs


class ConfigError(ValueError):
    pass


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping at the top of a YAML settings file, or a ``ConfigError`` naming the file."""
    p = Path(path)
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    return loaded or {}


def validated(model: type[M], data: dict[str, Any], path: str | Path | None = None) -> M:
    """``model`` from ``data``, or a ``ConfigError`` naming the file and every bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        where = f"{path}: " if path else ""
        msgs = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'config'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{where}{msgs}") from None


def load_config(path: str | Path | None = None, **overrides: Any) -> ScanConfig:
    """Read ``path`` (YAML) if given, then apply the non-None ``overrides`` (CLI flags)."""
    data = read_yaml(path) if path is not None else {}
    for k, v in overrides.items():
        if v is not None:
            stem = k.removesuffix("s")
            for alias in (stem, stem + "s"):  # a flag replaces the YAML's key in either form
                data.pop(alias, None)
            data[k] = v
    return validated(ScanConfig, data, path)
