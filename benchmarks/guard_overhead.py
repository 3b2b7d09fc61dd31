"""What the guard proxy (``mmsafe serve``) adds: latency and requests/s against a trivial upstream (a minimal
FastAPI app returning a fixed completion, in its own process), called directly and through the proxy with no
defense (pass-through) and with ``ocr-filter``, in one run. All traffic goes to 127.0.0.1; every phase is capped
in requests and seconds.

Latency: requests one at a time, direct and proxied in alternating blocks (so a change in the machine's load hits
both alike); p50 / p99 and the added milliseconds. Throughput: ``--concurrency`` requests in flight at once.
``ocr-filter`` requests carry a small typographic image, so OCR and the request screen run on each. The proxies run
as the CLI runs them, audit log included. Goal: pass-through adds <= 5 ms at p50 and holds >= 500 requests/s.

    python benchmarks/guard_overhead.py [--requests 400] [--concurrency 8] [--seconds 20] [--ocr-requests 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from mmsafe.serve.server import free_port, wait_until_up

ANSWER = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "A fixed answer."},
                       "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


def serve_trivial(port: int) -> None:
    """The trivial upstream: every chat completion is the same fixed answer."""
    from fastapi import FastAPI

    from mmsafe.serve.server import serve

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> dict:
        return ANSWER

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    serve(app, port=port)


def start(args: list[str], health: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    wait_until_up(health, proc, timeout_s=600)
    return proc


def request_bodies() -> tuple[dict, dict]:
    """A text-only request, and one with a small typographic image (what ocr-filter reads)."""
    from PIL import Image, ImageDraw

    from mmsafe.fonts import load_font
    from mmsafe.serve.openai_types import chat_messages
    from mmsafe.types import ImageRef, Sample

    text = {"model": "bench", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    im = Image.new("RGB", (360, 90), "white")
    ImageDraw.Draw(im).text((16, 24), "Capital of France?", fill="black", font=load_font(32))
    sample = Sample(id="bench", prompt="Answer the question in the image.", images=(ImageRef.from_pil(im),))
    return text, {"model": "bench", "messages": chat_messages(sample)}


async def timed(client: httpx.AsyncClient, url: str, body: dict) -> float:
    t0 = time.perf_counter()
    r = await client.post(url, json=body)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {r.status_code}: {r.text[:200]}")
    return elapsed


async def sequential(client: httpx.AsyncClient, urls: dict[str, str], body: dict, n: int, seconds: float,
                     block: int = 25) -> dict[str, list[float]]:
    """Latencies, one request at a time, the ``urls`` taking turns in blocks of ``block``."""
    out: dict[str, list[float]] = {name: [] for name in urls}
    deadline = time.monotonic() + seconds
    while min(len(v) for v in out.values()) < n and time.monotonic() < deadline:
        for name, url in urls.items():
            for _ in range(block):
                out[name].append(await timed(client, url, body))
    return out


async def throughput(client: httpx.AsyncClient, url: str, body: dict, concurrency: int, n: int, seconds: float
                     ) -> tuple[int, float]:
    """(requests answered, requests/s) with ``concurrency`` in flight, until ``n`` are done or ``seconds`` pass."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while done < n and time.monotonic() < deadline:
            await timed(client, url, body)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, done / (time.perf_counter() - t0)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] * 1000 if len(xs) > 1 else xs[0] * 1000


async def measure(a: argparse.Namespace, direct: str, passthrough: str, ocr: str, pids: dict[str, int]) -> None:
    text, image = request_bodies()
    limits = httpx.Limits(max_connections=a.concurrency, max_keepalive_connections=a.concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        for url in (direct, passthrough, ocr):  # warm-up outside every clock (connections, first-call loads)
            for _ in range(3):
                await timed(client, url, image if url == ocr else text)
        lat = await sequential(client, {"direct": direct, "pass-through": passthrough}, text, a.requests, a.seconds)
        ocr_direct = await sequential(client, {"direct": direct}, image, a.ocr_requests, a.seconds,
                                      block=a.ocr_requests)
        ocr_lat = await sequential(client, {"ocr-filter": ocr}, image, a.ocr_requests, a.seconds, block=a.ocr_requests)
        rates, cpu = {}, {}
        for name, url in (("direct", direct), ("pass-through", passthrough)):
            before = {k: cpu_s(pid) for k, pid in pids.items()}
            rates[name] = await throughput(client, url, text, a.concurrency, a.requests * 10, a.seconds)
            cpu[name] = {k: (cpu_s(pid) - before[k]) / rates[name][0] * 1000 for k, pid in pids.items()}
        rates["ocr-filter"] = await throughput(client, ocr, image, min(a.concurrency, 8), a.ocr_requests * 2,
                                               a.seconds)

    base50, base99 = pct(lat["direct"], 50), pct(lat["direct"], 99)
    img50, img99 = pct(ocr_direct["direct"], 50), pct(ocr_direct["direct"], 99)
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{'':28}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'+p50 ms':>10}{'+p99 ms':>10}{'req/s':>10}")
    rows = [("direct", lat["direct"], base50, base99, rates["direct"]),
            ("guard, pass-through", lat["pass-through"], base50, base99, rates["pass-through"]),
            ("direct, image request", ocr_direct["direct"], img50, img99, None),
            ("guard, ocr-filter, image", ocr_lat["ocr-filter"], img50, img99, rates["ocr-filter"])]
    for name, xs, b50, b99, rate in rows:
        p50, p99 = pct(xs, 50), pct(xs, 99)
        added = "" if name.startswith("direct") else f"{p50 - b50:>10.2f}{p99 - b99:>10.2f}"
        print(f"{name:28}{len(xs):>6}{p50:>10.2f}{p99:>10.2f}{added or ' ' * 20}"
              f"{f'{rate[1]:.1f}' if rate else '':>10}")
    added50 = pct(lat["pass-through"], 50) - base50
    proxy_ms = cpu["pass-through"]["pass-through"]
    print(f"CPU ms per request at concurrency {a.concurrency}: upstream {cpu['direct']['upstream']:.2f} (direct), "
          f"{cpu['pass-through']['upstream']:.2f} (proxied); pass-through proxy {proxy_ms:.2f}, so one core "
          f"of its own serves up to {1000 / proxy_ms:.0f} requests/s")
    print(f"pass-through: +{added50:.2f} ms at p50 (goal <= 5), {rates['pass-through'][1]:.0f} requests/s "
          f"(goal >= 500), {rates['pass-through'][1] / rates['direct'][1]:.2f}x the direct rate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="latency samples per path (throughput: 10x, capped)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0, help="cap on each phase")
    ap.add_argument("--ocr-requests", type=int, default=16)
    ap.add_argument("--serve-trivial", type=int, help=argparse.SUPPRESS)  # the upstream's own process
    a = ap.parse_args()
    if a.serve_trivial:
        serve_trivial(a.serve_trivial)
        return
    ports = [free_port() for _ in range(3)]
    up = f"http://127.0.0.1:{ports[0]}"
    procs = [start([__file__, "--serve-trivial", str(ports[0])], f"{up}/healthz")]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for port, defense in zip(ports[1:], ("none", "ocr-filter")):
                procs.append(start(["-m", "mmsafe.cli.main", "serve", "--upstream", f"{up}/v1", "--defense", defense,
                                    "--port", str(port), "--max-concurrency", "256",
                                    "--audit", f"{tmp}/{defense}.sqlite"], f"http://127.0.0.1:{port}/healthz"))
            asyncio.run(measure(a, f"{up}/v1/chat/completions",
                                *(f"http://127.0.0.1:{p}/v1/chat/completions" for p in ports[1:]),
                                pids={"upstream": procs[0].pid, "pass-through": procs[1].pid}))
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=60)


if __name__ == "__main__":
    main()
