"""Settings of ``mmsafe serve`` (the guard proxy): the same fields from a YAML file or CLI flags (flags win),
validated by pydantic so a mistyped key is an error naming it."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmsafe.config import parse_specs, read_yaml, validated
from mmsafe.images import MAX_BYTES, MAX_PIXELS
from mmsafe.registry import ComponentSpec
from mmsafe.targets.openai_http import ENV_NAME

DEFAULT_AUDIT = Path("mmsafe-runs/guard/audit.sqlite")


class GuardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upstream: str = Field(description="the upstream server's base URL, up to /v1")
    model: str | None = Field(None, description="the upstream model requests go to; None: the client's own")
    defenses: list[ComponentSpec] = Field(
        default_factory=list, description="applied in order: input stages first to last, output last to first")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key_env: str | None = Field(None, description="NAME of the variable holding the key clients must send")
    upstream_key_env: str | None = Field(None, description="NAME of the variable holding the upstream's key")
    allow_image_hosts: list[str] = Field(default_factory=list, description="hosts remote image_urls may come from")
    allow_image_networks: list[str] = Field(default_factory=list,
                                            description="non-public networks (CIDR) those hosts may resolve to anyway")
    max_body_mb: float = Field(32.0, gt=0)
    max_image_mb: float = Field(16.0, gt=0, le=MAX_BYTES / 2**20)
    max_pixels: int = Field(25_000_000, gt=0, le=MAX_PIXELS)
    max_images: int = Field(8, ge=0)
    max_concurrency: int = Field(64, ge=1, description="requests handled at once; more get 429")
    timeout_s: float = Field(120.0, gt=0, description="for the upstream's answer")
    connect_timeout_s: float = Field(5.0, gt=0)
    image_timeout_s: float = Field(10.0, gt=0, description="for fetching a remote image, redirects included")
    audit: Path | None = Field(DEFAULT_AUDIT, description="SQLite audit log; None: no audit")
    audit_images: bool = Field(False, description="store the images themselves in the audit log, not only hashes")
    graceful_shutdown_s: float = Field(30.0, ge=0, description="how long requests in flight may finish on shutdown")

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) base URL such as http://127.0.0.1:8001/v1, got {v!r}")
        return v.rstrip("/")

    @field_validator("defenses", mode="before")
    @classmethod
    def _defenses(cls, v: Any) -> list[ComponentSpec]:
        if isinstance(v, str):  # "ocr-filter,jpeg" and "ocr-filter+jpeg" name the same chain
            v = v.replace("+", ",")
        return [s for s in parse_specs(v) if s.name != "none"]

    @field_validator("api_key_env", "upstream_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not ENV_NAME.fullmatch(v):
            # not echoed: this is where people paste the key itself
            raise ValueError("takes the NAME of an environment variable holding the key, not the key itself")
        return v

    @field_validator("allow_image_hosts", "allow_image_networks", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list):
            return v  # pydantic says what is wrong with it
        return [x.strip() for item in items for x in str(item).split(",") if x.strip()]

    @field_validator("allow_image_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for n in v:
            ipaddress.ip_network(n, strict=False)  # its ValueError names the bad one
        return v


def load_guard_config(path: str | Path | None = None, **overrides: Any) -> GuardConfig:
    """Read ``path`` (YAML) if given, then apply the non-None ``overrides`` (CLI flags); ``ConfigError`` names the
    file and the bad keys."""
    data = read_yaml(path) if path is not None else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validated(GuardConfig, data, path)
