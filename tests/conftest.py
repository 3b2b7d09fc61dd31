from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMSAFE_SHARED", ROOT.parent / "shared"))
FIGSTEP = SHARED / "datasets" / "figstep"

# The tests' own model cache, so they never depend on what a user's ~/.cache holds (converted once per machine).
os.environ.setdefault("MMSAFE_CACHE", str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mmsafe"))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # prove the embedded path needs no network

# Small answers keep the suite fast; the arguments are part of the row key, so tests that build a Scan use these.
READER_ARGS = {"max_new_tokens": 24, "batch_size": 8}


def shared(folder: Path, probe: str) -> Path:
    """``folder`` of the shared data, checked by one file in it. Missing: a skip on a developer's machine, a failure
    in CI, which has the shared data (a missing copy there is a broken setup, not a reason to skip)."""
    if not (folder / probe).is_file():
        missing = f"{folder / probe} not found (set MMSAFE_SHARED to the shared data folder)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return folder


@pytest.fixture(scope="session")
def figstep_dir() -> Path:
    return shared(FIGSTEP, "safebench.csv")


@pytest.fixture(scope="session")
def xstest_dir() -> Path:
    return shared(SHARED / "datasets" / "xstest", "xstest_prompts.csv")


@pytest.fixture(scope="session")
def reader():
    """The real embedded target, loaded once for the whole session."""
    from mmsafe.targets import targets

    target = targets.build({"name": "reader", "args": READER_ARGS})
    target.load()
    yield target
    target.close()


@pytest.fixture(scope="session")
def ocr():
    from mmsafe.ocr import OCR

    return OCR()


def check_prompt_noise(target, prompts: list[str], goals: list[str]) -> None:
    """Prompt-embedding perturbations (what ``cropa`` needs): they sit on exactly the prompt's tokens, zero noise
    changes nothing, gradients reach them, and one row's noise changes only that row's loss."""
    import torch

    for p in prompts:
        text = target.prompt_text(p, True)
        ids, _ = target.prompt_encoding(text)
        pos = target.prompt_positions(text, p)
        assert pos == list(range(pos[0], pos[-1] + 1)), "prompt tokens must be contiguous"
        assert target.tok.decode([ids[i] for i in pos]).strip() == p
    h, w = target.image_size
    x = torch.rand(len(prompts), 3, h, w, generator=torch.Generator().manual_seed(1))
    shapes = [target.prompt_noise_shape(p) for p in prompts]
    noise = [torch.zeros(s, requires_grad=True) for s in shapes]
    with torch.no_grad():
        clean = target.loss(x, prompts, goals)
    zero = target.loss(x, prompts, goals, prompt_noise=noise)
    assert torch.allclose(clean, zero.detach(), atol=1e-5)
    grads = torch.autograd.grad(zero.sum(), noise)
    assert all(g.abs().sum() > 0 for g in grads), "no gradient reached the prompt perturbation"
    bump = torch.randn(shapes[0], generator=torch.Generator().manual_seed(2)) * 3 * target.embedding_std()
    with torch.no_grad():
        moved = target.loss(x, prompts, goals, prompt_noise=[bump] + [None] * (len(prompts) - 1))
    assert abs(float(moved[0] - clean[0])) > 1e-4
    assert torch.allclose(moved[1:], clean[1:], atol=1e-5)
    with pytest.raises(ValueError, match="prompt_noise_shape"):
        target.loss(x, prompts, goals, prompt_noise=[torch.zeros(shapes[0][0] + 1, shapes[0][1])] + [None] * (len(prompts) - 1))
