"""``mmsafe serve-model``: any mmsafe target behind an OpenAI-compatible endpoint (``mmsafe.serve.app``)."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.console import Console

from mmsafe.cli.output import fail

app = typer.Typer(
    help="Serve a target (the embedded reader by default) as an OpenAI-compatible multimodal API on 127.0.0.1.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def serve_model(
    target: Annotated[str, typer.Option("--target", "-t", help="The target to serve, as in mmsafe scan.")] = "reader",
    host: Annotated[str, typer.Option(help="Address to listen on; keep 127.0.0.1 unless others must reach it.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    model_name: Annotated[Optional[str], typer.Option(help="The model's name in /v1/models and answers. \\[default: the target's label]")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="The target's answer length limit (reader default 128); requests' max_tokens are not used.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Most concurrent requests answered in one generate() call (reader default 16).")] = None,
    batch_wait_ms: Annotated[float, typer.Option(min=0, help="How long a request waits for others to batch with.")] = 5.0,
    api_key_env: Annotated[Optional[str], typer.Option(help="NAME of an environment variable holding a key that clients must send as a bearer token. \\[default: no key]")] = None,
    fault_rate: Annotated[float, typer.Option(min=0, max=1, help="For testing clients: the share of requests that fail (see --faults).")] = 0.0,
    faults: Annotated[str, typer.Option(help="Comma-separated failures drawn evenly: 500, 429 (with Retry-After), stall (answer after --stall-s), drop (connection closed mid-response).")] = "500,429,stall,drop",
    fault_seed: Annotated[int, typer.Option(help="Seed of the fault draws: the same requests meet the same faults; a retry draws again.")] = 0,
    retry_after: Annotated[float, typer.Option(min=0, help="Seconds sent in a 429's Retry-After.")] = 1.0,
    stall_s: Annotated[float, typer.Option(min=0, help="How long a stalled request waits before it is answered.")] = 30.0,
) -> None:
    """Serve TARGET at http://HOST:PORT/v1 (POST /v1/chat/completions, plain or streamed; GET /v1/models; GET
    /healthz with request and batch counts). Images come as base64 data URLs; concurrent requests are batched into
    the target. Scan it with -t openai:http://HOST:PORT/v1."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from mmsafe.registry import ComponentSpec, UnknownComponent
    from mmsafe.serve.app import create_app
    from mmsafe.serve.faults import Faults
    from mmsafe.serve.server import serve
    from mmsafe.targets import targets

    err = Console(stderr=True)
    spec = ComponentSpec.parse(target)
    for key, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if value is not None:
            spec.args[key] = value
    key = None
    if api_key_env is not None:
        key = os.environ.get(api_key_env)
        if not key:
            fail(f"--api-key-env: the environment variable {api_key_env} is not set or empty")
    try:
        plan = Faults(rate=fault_rate, kinds=tuple(k.strip() for k in faults.split(",") if k.strip()),
                      seed=fault_seed, retry_after_s=retry_after, stall_s=stall_s)
        model = targets.build(spec)
        err.print(f"loading {spec.label} ...", highlight=False)
        model.load()
    except (UnknownComponent, ValueError, ImportError, OSError) as e:
        fail(str(e))
    name = model_name or ComponentSpec.parse(target).label
    err.print(f"serving {name} at http://{host}:{port}/v1 (Ctrl-C to stop)"
              + (f"; fault mode: {fault_rate:.0%} of requests fail ({faults})" if fault_rate else ""), highlight=False)
    try:
        serve(create_app(model, name, plan, key, batch_wait_ms / 1000), host, port)
    finally:
        model.close()
