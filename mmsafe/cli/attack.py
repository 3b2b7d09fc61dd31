"""``mmsafe attack``: craft gradient-attack images against a white-box target and save them as a JSONL dataset.

The saved images are 8-bit PNGs, exactly what ``mmsafe scan -d jsonl:DIR/adversarial.jsonl`` then sends, so the
scan measures the attack as a model would receive it (after quantisation), not the float tensor it was optimised as.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    help="Craft white-box adversarial images (hijack, visual-jailbreak, refusal, patch, cropa) and save them as a dataset.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _fail(msg: str) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/red] {escape(msg)}", soft_wrap=True)
    raise typer.Exit(2)


@app.callback(invoke_without_command=True)
def attack(
    target: Annotated[str, typer.Option("--target", "-t", help="White-box target, e.g. tiny-llava (offline) or hf:llava-hf/llava-1.5-7b-hf.")],
    attack: Annotated[str, typer.Option("--attack", "-a", help="Gradient attack: hijack, visual-jailbreak, refusal, patch or cropa; NAME:VALUE sets its first argument, e.g. hijack:'Visit example.com'.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Samples to attack, e.g. jsonl:path/to/file.jsonl.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNGs, adversarial.jsonl and clean.jsonl.")],
    eps: Annotated[Optional[float], typer.Option(help="Budget in pixel levels of 255 (L∞ 16 = 16/255). Negative = unconstrained. \\[default: 16]")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="PGD steps. \\[default: 100]")] = None,
    norm: Annotated[Optional[str], typer.Option(help="linf or l2. \\[default: linf]")] = None,
    method: Annotated[Optional[str], typer.Option(help="sign (PGD) or adam. \\[default: sign]")] = None,
    batch: Annotated[Optional[int], typer.Option(min=1, help="Rows per step: (prompt, target) pairs for universal attacks (seen in turn), samples for per-sample ones.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Samples, spread over categories and harmful/benign.")] = None,
    prompts: Annotated[Optional[str], typer.Option(help="Prompts a universal image is optimised over: a .txt (one per line) or .jsonl file, or 'samples' for the dataset's own. The dataset's prompts are then held out. \\[default: per attack]")] = None,
) -> None:
    """Craft one adversarial image per clean image (universal attacks) or per sample, show the loss per step, save
    PNGs under OUT and OUT/adversarial.jsonl (id, prompt, image, category, benign, plus norms and losses), and
    OUT/clean.jsonl: the same rows with the unperturbed start image, the baseline to scan against."""
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from mmsafe.attacks import attacks
    from mmsafe.attacks._gradient import GradientAttack
    from mmsafe.datasets import datasets
    from mmsafe.registry import ComponentSpec, UnknownComponent
    from mmsafe.runner.scan import spread
    from mmsafe.targets import targets
    from mmsafe.targets.base import WhiteBoxTarget

    err = Console(stderr=True)
    spec = ComponentSpec.parse(attack)
    for key, value in (("eps", None if eps is not None and eps < 0 else eps), ("steps", steps), ("norm", norm),
                       ("method", method), ("batch", batch), ("prompts", prompts)):
        if value is not None or (key == "eps" and eps is not None):
            spec.args[key] = value
    try:
        atk = attacks.build(spec)
        if not isinstance(atk, GradientAttack):
            _fail(f"attack {spec.name!r} is not a gradient attack; known gradient attacks: "
                  + ", ".join(n for n in attacks.names() if isinstance(attacks.get(n), type)
                              and issubclass(attacks.get(n), GradientAttack)))
        ds = datasets.build(dataset)
        samples = spread(ds.load(), limit)
        for p in ds.problems:
            err.print(f"[yellow]warning:[/yellow] {escape(p)}", soft_wrap=True)
        if not samples:
            _fail(f"dataset {dataset!r} has no samples")
        tgt = targets.build(target)
    except (UnknownComponent, ValueError, TypeError, FileNotFoundError, OSError) as e:
        _fail(str(e))
    if not isinstance(tgt, WhiteBoxTarget):
        _fail(f"target {target!r} is not white-box (no gradients to its image); use e.g. tiny-llava or hf:<llava id>")

    crafted = _craft_with_progress(atk, tgt, samples, err)
    out.mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(exist_ok=True)
    files: dict[Any, str] = {}

    def save(image: Any) -> str:
        from mmsafe.types import ImageRef

        ref = ImageRef.from_pil(image)  # PNG: lossless, so the scan reads exactly these 8-bit pixels
        name = f"images/{ref.sha256[:16]}.png"
        if name not in files.values():
            (out / name).write_bytes(ref.read_bytes())
        return name

    adversarial, clean = [], []
    for s, c in zip(samples, crafted):
        if id(c) not in files:
            files[id(c)] = save(c.image)
            files[(id(c), "clean")] = save(c.clean)
        row: dict[str, Any] = {"id": s.id, "prompt": s.prompt, "image": files[id(c)], "category": s.category,
                               "benign": s.benign, "attack": spec.name, "attack_spec": atk.spec.label,
                               "target": target, "source": s.source, "loss_clean": round(c.loss_clean, 6),
                               "loss_adv": round(c.loss_adv, 6), "steps": c.steps}
        row.update({k: (None if v == float("inf") else round(v, 6)) for k, v in c.norms.items()})
        adversarial.append(json.dumps(row, ensure_ascii=False))
        clean.append(json.dumps({"id": s.id, "prompt": s.prompt, "image": files[(id(c), "clean")],
                                 "category": s.category, "benign": s.benign, "source": s.source},
                                ensure_ascii=False))
    (out / "adversarial.jsonl").write_text("\n".join(adversarial) + "\n", encoding="utf-8")
    # the same rows with the start image as the target sees it: the paired baseline for the adversarial scan
    (out / "clean.jsonl").write_text("\n".join(clean) + "\n", encoding="utf-8")
    unique = {id(c): c for c in crafted}.values()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    Console().print(
        f"{len(samples)} samples, {len(unique)} adversarial images in {out}/images; mean loss "
        f"{mean([c.loss_clean for c in unique]):.3f} -> {mean([c.loss_adv for c in unique]):.3f} (8-bit PNG), "
        f"max L∞ {max(c.norms['linf'] for c in unique) * 255:.1f}/255\n"
        f"Next: mmsafe scan -t {target} -d jsonl:{out / 'adversarial.jsonl'} -a none   (baseline: "
        f"-d jsonl:{out / 'clean.jsonl'})",
        highlight=False, soft_wrap=True,
    )


def _craft_with_progress(atk: Any, tgt: Any, samples: list[Any], err: Console) -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]craft[/bold] image {task.fields[group]}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("steps  loss {task.fields[loss]}"), TimeElapsedColumn(),
                        console=err)
    tasks: dict[int, Any] = {}

    def report(group: int, groups: int, step: int, steps: int, loss: float) -> None:
        if group not in tasks:
            tasks[group] = progress.add_task("craft", total=steps, group=f"{group + 1}/{groups}", loss="")
        progress.update(tasks[group], completed=step, loss=f"{loss:.4f}")

    with progress:
        return atk.craft(tgt, samples, progress=report)
