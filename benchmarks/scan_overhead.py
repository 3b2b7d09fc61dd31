"""mmsafe scan vs the model's own generate on the same rows, in one run.

Three baselines. The plain loop is what one-paper repos do: for each (sample, attack) row, one generate() call at
batch 1. The batched generate is the limit the scan can reach: the language model's own generation on the scan's
batches, nothing else. To be generous to both, the attack images are rendered and OCR'd *before* their clocks start,
so they time generation only. The target generate is the reader's whole generate() on the same batches, its OCR
included. The scan's time includes everything: rendering, OCR, batched generation, judging and SQLite writes.
Goals: scan / loop <= 1.10 (issue 3; batching should make it well under 1) and scan / batched generate <= 1.10
(issue 13). The reader's OCR is part of the target (a VLM's vision encoder in its place), so scan / target generate
is what the scan itself adds.

    python benchmarks/scan_overhead.py [--samples 12] [--max-new-tokens 64] [--batch-size 16] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import TypeVar

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from mmsafe.attacks import attacks  # noqa: E402
from mmsafe.config import load_config  # noqa: E402
from mmsafe.datasets import datasets  # noqa: E402
from mmsafe.images import load_image  # noqa: E402
from mmsafe.ocr import clear_cache  # noqa: E402
from mmsafe.runner.scan import Scan, spread  # noqa: E402
from mmsafe.targets import targets  # noqa: E402
from mmsafe.targets.reader import compose  # noqa: E402

T = TypeVar("T")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=12, help="mini samples; rows = samples x 2 attacks")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 on cores shared with other "
                    "jobs, where more threads wait on each other")
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)

    reader = targets.build({"name": "reader", "args": {"max_new_tokens": a.max_new_tokens, "batch_size": a.batch_size}})
    reader.load()
    samples = spread(datasets.build("mini").load(), a.samples)
    rows = [attacks.build(name).apply(s) for name in ("none", "figstep") for s in samples]

    # Warm-up outside both clocks: first-call costs (OCR session, torch kernels) are not what we compare.
    reader.generate(rows[:1])

    texts = [reader.chat_text(compose(r.prompt, [reader.ocr(load_image(i)) for i in r.images])) for r in rows]
    loop = timed(lambda: sum(reader._generate_texts([t])[0][2] for t in texts))
    # The scan's batches: rows in plan order (attack-major), batch_size at a time.
    batched = timed(lambda: sum(out[2] for start in range(0, len(texts), a.batch_size)
                                for out in reader._generate_texts(texts[start:start + a.batch_size])))
    # The target's whole generate() on the same batches: the reader's OCR included, as in the scan.
    clear_cache()
    whole = timed(lambda: sum(r.completion_tokens or 0 for start in range(0, len(rows), a.batch_size)
                              for r in reader.generate(rows[start:start + a.batch_size])))
    clear_cache()  # the scan reads every image itself

    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(target={"name": "reader", "args": {"max_new_tokens": a.max_new_tokens}},
                          limit=a.samples, out=out)
        scan = timed(lambda: Scan(cfg, target=reader).run())
        from mmsafe.runner.store import Store

        store = Store.open_existing(out)
        scan_tokens = sum(r["completion_tokens"] or 0 for r in store.rows())
        store.close()
    assert scan[2].generated == len(rows), scan[2]

    print(f"rows: {len(rows)}  max_new_tokens: {a.max_new_tokens}  scan batch size: {a.batch_size}")
    for name, (wall, cpu, tokens) in (("plain generate loop (batch 1, OCR excluded)", loop),
                                      ("batched generate (OCR excluded)", batched),
                                      ("target generate (batched, OCR included)", whole),
                                      ("mmsafe scan (everything included)", scan[:2] + (scan_tokens,))):
        print(f"{name:45s} {wall:7.1f} s wall  {cpu:7.1f} CPU s  {len(rows) / wall:5.2f} rows/s  {tokens} tokens")
    for name, (wall, cpu, _), goal in (("loop", loop, "  (goal <= 1.10x)"), ("batched generate", batched,
                                       "  (goal <= 1.10x)"), ("target generate", whole, "  (what the scan adds)")):
        print(f"ratio scan / {name}: {scan[0] / wall:.2f}x wall, {scan[1] / cpu:.2f}x CPU{goal}")


def timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """``(wall seconds, CPU seconds of this process, result)`` of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out

if __name__ == "__main__":
    main()
