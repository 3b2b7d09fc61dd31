"""``mmsafe serve``: the guard proxy (``mmsafe.serve.guard``) in front of any OpenAI-compatible server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from mmsafe.cli.output import fail

app = typer.Typer(
    help="Put mmsafe's defenses in front of any OpenAI-compatible model: a guard proxy on 127.0.0.1.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def serve(
    upstream: Annotated[Optional[str], typer.Option(help="The upstream server's base URL, up to /v1 (vLLM, Ollama, llama.cpp, a hosted API, mmsafe serve-model).")] = None,
    model: Annotated[Optional[str], typer.Option(help="The upstream model every request goes to. \\[default: the one each client names]")] = None,
    defense: Annotated[Optional[str], typer.Option("--defense", help="Defenses in order, comma-separated, e.g. ocr-filter,jpeg,protector (input stages first to last, output stages last to first). \\[default: none, a pass-through]")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file with any of these settings (snake_case keys); flags override it.")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address to listen on; keep 127.0.0.1 unless others must reach it. \\[default: 127.0.0.1]")] = None,
    port: Annotated[Optional[int], typer.Option(min=0, max=65535, help="Port to listen on. \\[default: 8000]")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="NAME of an environment variable holding the key clients must send as a bearer token. \\[default: no key]")] = None,
    upstream_key_env: Annotated[Optional[str], typer.Option(help="NAME of an environment variable holding the upstream's key (never echoed or logged).")] = None,
    allow_image_host: Annotated[Optional[list[str]], typer.Option(help="A host remote image_urls may be fetched from (repeat or comma-separate). Never from loopback, link-local, private or reserved addresses, checked after DNS and on every redirect. \\[default: none: only data: URLs]")] = None,
    allow_image_network: Annotated[Optional[list[str]], typer.Option(help="A non-public network (CIDR) allowed hosts may resolve to anyway, e.g. an internal image store.")] = None,
    max_body_mb: Annotated[Optional[float], typer.Option(min=0, help="Request body limit, MiB (413 past it). \\[default: 32]")] = None,
    max_image_mb: Annotated[Optional[float], typer.Option(min=0, help="Limit per image, MiB, encoded. \\[default: 16]")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(min=1, help="Limit per image in pixels, read from the header before any decoding (decompression bombs). \\[default: 25000000]")] = None,
    max_images: Annotated[Optional[int], typer.Option(min=0, help="Images per request. \\[default: 8]")] = None,
    max_concurrency: Annotated[Optional[int], typer.Option(min=1, help="Requests handled at once; past it clients get 429 with Retry-After. \\[default: 64]")] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0, help="Seconds for the upstream's answer (then 504). \\[default: 120]")] = None,
    audit: Annotated[Optional[Path], typer.Option(help="SQLite audit log, one row per request. \\[default: mmsafe-runs/guard/audit.sqlite]")] = None,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Keep no audit log.")] = False,
    audit_images: Annotated[Optional[bool], typer.Option("--audit-images/--no-audit-images", help="Store the images themselves in the audit log, not only their SHA-256. \\[default: hashes only]")] = None,
    graceful_shutdown_s: Annotated[Optional[float], typer.Option(min=0, help="On Ctrl-C or SIGTERM, how long requests in flight may finish. \\[default: 30]")] = None,
) -> None:
    """Serve a guard at http://HOST:PORT/v1: POST /v1/chat/completions (plain or streamed) screened by the input
    defenses, forwarded to UPSTREAM, its answer checked by the output defenses; GET /v1/models, /healthz, /metrics
    (Prometheus). A blocked request gets a refusal with finish_reason content_filter and an mmsafe field saying
    which defense decided and why. Scan it like any server: mmsafe scan -t openai:http://HOST:PORT/v1."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from mmsafe.config import ConfigError
    from mmsafe.registry import ComponentError, UnknownComponent
    from mmsafe.serve.guard import create_guard_app
    from mmsafe.serve.guard_config import load_guard_config
    from mmsafe.serve.server import serve as run_server

    err = Console(stderr=True)
    try:
        cfg = load_guard_config(
            config, upstream=upstream, model=model, defenses=defense, host=host, port=port, api_key_env=api_key_env,
            upstream_key_env=upstream_key_env, allow_image_hosts=allow_image_host,
            allow_image_networks=allow_image_network, max_body_mb=max_body_mb, max_image_mb=max_image_mb,
            max_pixels=max_pixels, max_images=max_images, max_concurrency=max_concurrency, timeout_s=timeout,
            audit=audit, audit_images=audit_images, graceful_shutdown_s=graceful_shutdown_s)
        if no_audit:
            cfg.audit = None
        guard = create_guard_app(cfg)
    except (ConfigError, ComponentError, UnknownComponent, ValueError, OSError) as e:
        fail(str(e))
    names = guard.state.guard.defense_names
    err.print(f"guarding {cfg.upstream} with {', '.join(names) or 'no defense (pass-through)'} at "
              f"http://{cfg.host}:{cfg.port}/v1 (Ctrl-C to stop)"
              + (f"; audit log {cfg.audit}" if cfg.audit else ""), highlight=False)
    run_server(guard, cfg.host, cfg.port, cfg.graceful_shutdown_s)
