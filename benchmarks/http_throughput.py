"""Scan throughput through the ``openai`` target against the embedded model served on 127.0.0.1 by ``mmsafe
serve-model``, at concurrency 1, 4 and 16, against a sequential loop of single requests (the plain-client way), on
the same rows in one run.

The server batches concurrent requests into the reader's generate (up to --batch-size), so concurrency is what
lets a scan use batching through HTTP. The scans' times include everything (rendering, requests, judging, SQLite);
the loop's only its requests (its images are rendered and encoded before its clock starts).

    python benchmarks/http_throughput.py [--samples 12] [--max-new-tokens 32] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import httpx

from mmsafe.attacks import attacks
from mmsafe.config import load_config
from mmsafe.datasets import datasets
from mmsafe.runner.scan import Scan, spread
from mmsafe.runner.store import Store
from mmsafe.serve.openai_types import chat_messages
from mmsafe.serve.server import free_port, wait_until_up


def _batches(base: str) -> int:
    return httpx.get(f"{base}/healthz").json()["stats"]["batches"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=12, help="mini samples; rows = samples x 2 attacks (none, figstep)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16, help="the server's most requests per generate call")
    a = ap.parse_args()

    import openai

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mmsafe.cli.main", "serve-model", "--port", str(port),
                             "--max-new-tokens", str(a.max_new_tokens), "--batch-size", str(a.batch_size)],
                            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    try:
        wait_until_up(f"{base}/healthz", proc, timeout_s=600)
        samples = spread(datasets.build("mini").load(), a.samples)
        messages = [chat_messages(attacks.build(name).apply(s)) for name in ("none", "figstep") for s in samples]
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=600)

        def ask(m: list[dict]) -> int:
            out = client.chat.completions.create(model="reader", messages=m, max_tokens=a.max_new_tokens)
            return out.usage.completion_tokens

        ask(messages[0])  # warm-up outside every clock: first-call costs are not what we compare
        batches = _batches(base)
        t0 = time.perf_counter()
        loop_tokens = sum(ask(m) for m in messages)
        loop_s = time.perf_counter() - t0
        results = [("sequential loop of single requests", loop_s, loop_tokens, _batches(base) - batches)]

        for concurrency in (1, 4, 16):
            with tempfile.TemporaryDirectory() as out:
                # A long timeout: on a loaded CPU a batch can outlast the default, and a retry would be timed too.
                cfg = load_config(target={"name": "openai", "args": {
                    "base_url": f"{base}/v1", "max_concurrency": concurrency, "max_new_tokens": a.max_new_tokens,
                    "timeout_s": 600}}, limit=a.samples, out=out)
                batches = _batches(base)
                t0 = time.perf_counter()
                result = Scan(cfg).run()
                seconds = time.perf_counter() - t0
                store = Store.open_existing(out)
                tokens = sum(r["completion_tokens"] or 0 for r in store.rows())
                store.close()
            assert result.generated == len(messages) and result.errors == 0, result
            results.append((f"mmsafe scan, concurrency {concurrency}", seconds, tokens, _batches(base) - batches))
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    print(f"rows: {len(messages)}  max_new_tokens: {a.max_new_tokens}  server batch size: {a.batch_size}")
    for name, seconds, tokens, batches in results:
        print(f"{name:36s} {seconds:7.1f} s  {len(messages) / seconds:5.2f} rows/s  {tokens:5d} tokens  "
              f"{batches:3d} server batches  throughput x{loop_s / seconds:.2f} of the loop")


if __name__ == "__main__":
    main()
