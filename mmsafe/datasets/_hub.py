"""Download benchmarks that their authors publish on the Hugging Face Hub, in the format mmsafe's loaders read.

``huggingface_hub`` is imported only when downloading. Without network the download fails at once (a short
timeout, no retry loop) with a message saying how to point mmsafe at a local copy instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mmsafe.datasets.base import DatasetError

TIMEOUT_S = 3.0


@dataclass(frozen=True)
class HubDataset:
    repo_id: str
    entry: str  # the file to give the loader once downloaded
    source: str  # where the Hub id is published


# Only ids the benchmark's authors publish (the cited page), whose files the loader of the same name reads as they are.
HUB: dict[str, HubDataset] = {
    "jailbreakv": HubDataset(
        "JailbreakV-28K/JailBreakV-28k", "JailBreakV_28K.csv",
        "the JailBreakV-28K dataset card, huggingface.co/datasets/JailbreakV-28K/JailBreakV-28k",
    ),
    "vlguard": HubDataset(
        "ys-zong/VLGuard", "test.json",
        "README of github.com/ys-zong/VLGuard: 'We also host a copy at HuggingFace'",
    ),
}

# Benchmarks that are not on the Hub in their native format: where their authors publish them.
ELSEWHERE: dict[str, str] = {
    "mmsafetybench": "github.com/isXinLiu/MM-SafetyBench (data/processed_questions/; images: the link in its README)",
    "figstep": "github.com/ThuCCSLab/FigStep (data/question/safebench.csv, data/images/SafeBench-Tiny/)",
    "figstep-pro": "github.com/ThuCCSLab/FigStep (data/images/FigStep-Pro/sub-figures.zip)",
    "xstest": "github.com/paul-rottger/exaggerated-safety (xstest_prompts.csv)",
    "harmbench-mm": "github.com/centerforaisafety/HarmBench (data/behavior_datasets/, multimodal_behavior_images/)",
}


class HubUnavailable(RuntimeError):
    """The Hub cannot be reached (offline mode, no network, repo gone); the message says what to do instead."""


def local_hint(name: str) -> str:
    entry = HUB[name].entry if name in HUB else "FILE"
    where = f"huggingface.co/datasets/{HUB[name].repo_id}" if name in HUB else ELSEWHERE.get(name, "its publisher")
    return (f"Get it from {where} on a machine with network, copy it here and point mmsafe at the local copy: "
            f"--dataset {name}:PATH/{entry} (check it with: mmsafe datasets inspect {name}:PATH/{entry}).")


def _offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return any((v or "").strip().upper() in {"1", "ON", "YES", "TRUE"} for v in flags)


def download(name: str, dest: str | Path, include: list[str] | None = None) -> Path:
    """Download benchmark ``name`` into ``dest``; return the file to give its loader (``dest`` if not found).

    ``include``: glob patterns of the repo files to fetch (all by default).
    """
    if name not in HUB:
        where = f" It is published at {ELSEWHERE[name]}." if name in ELSEWHERE else ""
        raise DatasetError(f"{name!r} has no Hugging Face download; downloadable: {', '.join(sorted(HUB))}.{where}")
    entry = HUB[name]
    if _offline():
        raise HubUnavailable(f"cannot download {name}: Hugging Face offline mode is on (HF_HUB_OFFLINE). "
                             + local_hint(name))
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError as e:
        raise HubUnavailable(f"cannot download {name}: huggingface_hub is not installed (pip install huggingface_hub). "
                             + local_hint(name)) from e
    endpoint = os.environ.get("HF_ENDPOINT") or None
    try:
        # One short metadata call first: a dead network fails here in TIMEOUT_S instead of in retried file requests.
        info = HfApi(endpoint=endpoint).repo_info(entry.repo_id, repo_type="dataset", timeout=TIMEOUT_S)
        snapshot_download(entry.repo_id, repo_type="dataset", revision=info.sha, local_dir=str(dest),
                          etag_timeout=TIMEOUT_S, endpoint=endpoint, allow_patterns=include)
    except Exception as e:  # noqa: BLE001 - any failure (DNS, refused, timeout, HTTP 4xx/5xx) gets the same advice
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HubUnavailable(f"could not download {name} ({entry.repo_id}) from the Hugging Face Hub: "
                             f"{type(e).__name__}: {reason}. " + local_hint(name)) from e
    found = sorted(Path(dest).rglob(entry.entry))
    return found[0] if found else Path(dest)
