"""Scan configuration: the same fields from a YAML file or CLI flags (flags win). Validated by pydantic, so a typo
in a YAML key is an error that names the key, not a silently ignored setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmsafe.registry import ComponentSpec

M = TypeVar("M", bound=BaseModel)

DEFAULT_OUT = "mmsafe-runs/scan"


def parse_specs(value: Any) -> list[ComponentSpec]:
    """``"a,b"``, ``["a", {"name": "b", "args": {...}}]`` or a single mapping -> specs."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(",")) if v]
    if isinstance(value, (dict, ComponentSpec)):
        value = [value]
    return [ComponentSpec.parse(v) for v in value]


class ScanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: ComponentSpec = ComponentSpec(name="reader")
    datasets: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="mini")])
    attacks: list[ComponentSpec] = Field(default_factory=lambda: parse_specs("none,figstep"))
    defenses: list[ComponentSpec] = Field(default_factory=lambda: [ComponentSpec(name="none")])
    # None: keywords plus the judges the attacks name as their own (a hijack's contains:<string>); see Scan
    judges: list[ComponentSpec] | None = None
    limit: int | None = Field(None, gt=0, description="samples per dataset, spread over categories")
    out: Path = Path(DEFAULT_OUT)
    retry_errors: bool = Field(True, description="re-run rows stored with an error")

    @model_validator(mode="before")
    @classmethod
    def _singular_keys(cls, data: Any) -> Any:
        # Accept `dataset:`/`attack:` as well as the plural; people write both.
        if isinstance(data, dict):
            data = dict(data)
            for one in ("dataset", "attack", "defense", "judge"):
                if one in data:
                    if one + "s" in data:
                        raise ValueError(f"give either {one!r} or {one + 's'!r}, not both")
                    data[one + "s"] = data.pop(one)
        return data

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> ComponentSpec:
        specs = parse_specs(v)
        if len(specs) != 1:
            raise ValueError("exactly one target per scan (run several scans into the same --out to compare)")
        return specs[0]

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
            for alias in (k, k.rstrip("s")):
                data.pop(alias, None)
            data[k] = v
    return validated(ScanConfig, data, path)
