"""``mmsafe attack``: craft gradient-attack images against a white-box target and save them as a JSONL dataset
(``mmsafe.attacks.adversarial_set`` says what is written and why)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from mmsafe.cli.output import fail, warn

app = typer.Typer(
    help="Craft white-box adversarial images (hijack, visual-jailbreak, refusal, patch, cropa) and save them as a dataset.",
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
    through: Annotated[Optional[str], typer.Option(help="An input purifier to optimise through (adaptive attack: its transform in every step's forward pass, fresh randomness each step, identity gradient), e.g. gaussian-noise or jpeg+tv-purify.")] = None,
) -> None:
    """Craft one adversarial image per clean image (universal attacks) or per sample, show the loss per step, save
    PNGs under OUT and OUT/adversarial.jsonl (id, prompt, image, category, benign, plus norms and losses), and
    OUT/clean.jsonl: the same rows with the unperturbed start image, the baseline to scan against."""
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from mmsafe.attacks import GradientAttack, attacks
    from mmsafe.attacks.adversarial_set import AdversarialSet
    from mmsafe.datasets import datasets
    from mmsafe.registry import ComponentSpec, UnknownComponent
    from mmsafe.runner.scan import spread
    from mmsafe.targets import targets

    err = Console(stderr=True)
    spec = ComponentSpec.parse(attack)
    for key, value in (("eps", None if eps is not None and eps < 0 else eps), ("steps", steps), ("norm", norm),
                       ("method", method), ("batch", batch), ("prompts", prompts),
                       ("through", through)):
        if value is not None or (key == "eps" and eps is not None):
            spec.args[key] = value
    try:
        atk = attacks.build(spec)
        if not isinstance(atk, GradientAttack):
            fail(f"attack {spec.name!r} is not a gradient attack; known gradient attacks: "
                  + ", ".join(n for n in attacks.names() if isinstance(attacks.get(n), type)
                              and issubclass(attacks.get(n), GradientAttack)))
        ds = datasets.build(dataset)
        samples = spread(ds.load(), limit)
        for p in ds.problems:
            warn(p)
        if not samples:
            fail(f"dataset {dataset!r} has no samples")
        tgt = targets.build(target)
        atk.bind(tgt)  # a target without gradients to its image fails here, naming attack and target
    except (UnknownComponent, ValueError, TypeError, FileNotFoundError, OSError) as e:
        fail(str(e))

    crafted = _craft_with_progress(atk, tgt, samples, err)
    out.mkdir(parents=True, exist_ok=True)
    AdversarialSet(samples, crafted, atk.spec, target).save(out)
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
                        console=err, disable=not err.is_terminal)
    tasks: dict[int, Any] = {}

    plain = not err.is_terminal  # a log file or CI: a line every 10 steps instead of a bar

    def report(group: int, groups: int, step: int, steps: int, loss: float) -> None:
        if group not in tasks:
            tasks[group] = progress.add_task("craft", total=steps, group=f"{group + 1}/{groups}", loss="")
        progress.update(tasks[group], completed=step, loss=f"{loss:.4f}")
        if plain and (step % 10 == 0 or step == steps):
            err.print(f"craft image {group + 1}/{groups}: step {step}/{steps}, loss {loss:.4f}", markup=False,
                      highlight=False)

    with progress:
        return atk.craft(tgt, samples, progress=report)
