"""Judge throughput: the ``classifier`` judge vs the ``keywords`` baseline on the same responses, in one run.

The responses are rows of mmsafe's packaged judge labels (shuffled, repeated if needed to reach ``--n``), judged in
batches the way a scan judges them. Loading the embedding model is timed apart: a scan pays it once per process.
Like in a scan, the judge embeds each distinct request once (it caches request embeddings), so the count of distinct
requests is printed too.
The baseline is the same judge with its embedding features computed by sentence-transformers' PyTorch forward (what
mmsafe used before ``mmsafe/embeddings.py`` moved them to onnxruntime; the numbers are the same), timed in the same
run; its refusal cross-encoder runs on onnxruntime in both, so the ratio covers the features only.
Goal (issue "Judges you can trust"): classifier < 60 s for 1,000 responses on 2 CPU cores. The process's CPU
seconds are printed beside wall time: on a shared machine wall time measures the neighbours, while CPU seconds / 2
is what 2 idle cores would take.

    python benchmarks/judge_throughput.py [--n 1000] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mmsafe.judges import judges  # noqa: E402
from mmsafe.judges.classifier import LABELS  # noqa: E402
from mmsafe.types import Attempt, Response, Sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="responses to judge")
    ap.add_argument("--batch-size", type=int, default=64, help="responses per judge() call")
    a = ap.parse_args()

    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(0).shuffle(rows)
    rows = list(itertools.islice(itertools.cycle(rows), a.n))
    attempts = [Attempt.of(Sample(id=str(i), prompt=r["prompt"]), Response(text=r["response"]))
                for i, r in enumerate(rows)]

    classifier = judges.build("classifier")
    t0 = time.perf_counter()
    classifier.judge(attempts[:1])  # loads the embedder once, as the first batch of a scan would
    load_s = time.perf_counter() - t0

    from sentence_transformers import SentenceTransformer

    from mmsafe.embeddings import embedder_path
    from mmsafe.judges import classifier as classifier_module

    st = SentenceTransformer(str(embedder_path()), local_files_only=True)
    onnx_embed = classifier_module.embed

    def st_embed(texts, batch_size=64):
        return st.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)

    times, cpu = {}, {}
    for name, judge, embed in (("keywords", judges.build("keywords"), onnx_embed),
                               ("classifier (torch)", judges.build("classifier"), st_embed),
                               ("classifier", classifier, onnx_embed)):
        classifier_module.embed = embed
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, a.n, a.batch_size):
            judge.judge(attempts[i: i + a.batch_size])
        times[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
    classifier_module.embed = onnx_embed

    import torch

    print(f"responses: {a.n} ({len({t.request.prompt for t in attempts})} distinct requests)  batch size: {a.batch_size}  "
          f"CPU cores: {os.cpu_count()}  torch threads: {torch.get_num_threads()}")
    print(f"classifier embedder load (once per process): {load_s:6.1f} s")
    for name, s in times.items():
        print(f"{name:<18}: {s:8.2f} s  {a.n / s:10.1f} responses/s  ({cpu[name]:.1f} CPU s)")
    print(f"ratio classifier / classifier (torch): {times['classifier'] / times['classifier (torch)']:.2f}x wall, "
          f"{cpu['classifier'] / cpu['classifier (torch)']:.2f}x CPU  (goal: classifier < 60 s for 1,000 responses "
          f"on 2 cores; here {cpu['classifier'] * 1000 / a.n / 2:.1f} s per 1,000 from CPU seconds / 2, "
          f"{times['classifier'] * 1000 / a.n:.1f} s wall)")


if __name__ == "__main__":
    main()
