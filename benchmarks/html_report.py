"""HTML report speed: a 10,000-row synthetic store rendered to one HTML file, then opened in headless Chromium.

The store is written through the real Store API: synthetic rows (13 categories, 4 attacks, 2 defenses, 2 judges,
answers of a few hundred characters) and ``--images`` distinct FigStep-sized images (760 x 760 PNG) sent by the
image attacks' rows. Timed in the same run: the terminal report (``mmsafe report DIR``, every table), the HTML report
(``mmsafe report DIR --html``), and in Chromium the load event, the first gallery page on screen, a filter change and
a page turn. Goals (issue "A report people read, share and compare"): render < 10 s, open < 5 s.

    python benchmarks/html_report.py [--rows 10000] [--images 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw
from typer.testing import CliRunner

from mmsafe.cli.main import app
from mmsafe.runner.store import Store
from mmsafe.types import ImageRef, Response, Row, Sample, Verdict

ATTACKS = ("none", "figstep", "prefix-injection", "figstep+refusal-suppression")
IMAGE_ATTACKS = ("figstep", "figstep+refusal-suppression")
DEFENSES = ("none", "ocr-filter")
CATEGORIES = [f"category-{i:02d}" for i in range(13)]
WORDS = "the a model answer request image step list item first then next safe policy cannot help".split()
RENDER_GOAL_S, OPEN_GOAL_S = 10.0, 5.0
OPEN_GOALED = ("load event", "first gallery page")  # what the open goal is about; the rest are interactions


def synthetic_store(out: Path, n_rows: int, n_images: int) -> None:
    rng = random.Random(0)
    images = []
    for i in range(n_images):
        im = Image.new("RGB", (760, 760), "white")
        draw = ImageDraw.Draw(im)
        for line in range(3):
            draw.text((40, 80 + 120 * line), f"{line + 1}. step {i}-{line}", fill="black")
        images.append(ImageRef.from_pil(im))
    per_sample = len(ATTACKS) * len(DEFENSES)
    store = Store(out)
    batch: list[Row] = []
    for s in range(n_rows // per_sample):
        sample = Sample(id=f"s{s}", prompt=f"request {s}: " + " ".join(rng.choices(WORDS, k=12)),
                        category=CATEGORIES[s % len(CATEGORIES)], benign=s % 2 == 1)
        for a, attack in enumerate(ATTACKS):
            sent = sample.with_(images=(images[(s * 2 + a) % n_images],) if attack in IMAGE_ATTACKS else ())
            for defense in DEFENSES:
                text = " ".join(rng.choices(WORDS, k=rng.randint(20, 80)))
                refused = rng.random() < (0.2 if defense == "none" else 0.5)
                row = Row("mini", sample, attack, defense, "reader", attacked=sent,
                          response=Response(text=text, latency_s=rng.uniform(0.1, 2), prompt_tokens=50,
                                            completion_tokens=len(text.split())))
                row.verdicts = [
                    Verdict("keywords", "1", not refused, refused, float(not refused),
                            "refusal" if refused else "compliance"),
                    Verdict("classifier", "2", not refused and rng.random() < 0.6, refused, rng.random(),
                            "refusal" if refused else "unsafe"),
                ]
                batch.append(row)
        if len(batch) >= 512:
            store.write(batch)
            batch = []
    store.write(batch)
    store.close()


def timed(args: list[str]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    res = CliRunner().invoke(app, args)
    if res.exit_code != 0:
        raise SystemExit(f"mmsafe {' '.join(args)} failed:\n{res.output}")
    return time.perf_counter() - t0, time.process_time() - c0


def open_in_chromium(page_file: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("chromium not on PATH (apt-get install -y chromium)")
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        t0 = time.perf_counter()
        page.goto(page_file.resolve().as_uri(), wait_until="load", timeout=120_000)
        out["load event"] = time.perf_counter() - t0
        page.wait_for_selector("#gallery .item", timeout=60_000)
        out["first gallery page"] = time.perf_counter() - t0
        before = page.inner_text("#gallery-count")
        t0 = time.perf_counter()
        page.locator("#gallery-controls select[data-facet='attack']").select_option(value="figstep")
        page.wait_for_function("t => document.querySelector('#gallery-count').textContent !== t", arg=before)
        out["filter change"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        page.get_by_role("button", name="next ›").click()
        out["page turn"] = time.perf_counter() - t0
        browser.close()
        if errors:
            raise SystemExit(f"page errors: {errors}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--images", type=int, default=500, help="distinct images sent by the image attacks' rows")
    ap.add_argument("--keep", type=Path, help="write the store and the page here (default: a temporary folder)")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="mmsafe-html-bench-"))
    run, page_file = work / "run", work / "report.html"
    try:
        t0 = time.perf_counter()
        if not (run / "results.sqlite").is_file():
            synthetic_store(run, a.rows, a.images)
        print(f"store: {a.rows} rows, {a.images} distinct images, written in {time.perf_counter() - t0:.1f} s "
              f"({os.cpu_count()} CPU cores)")
        os.environ.setdefault("COLUMNS", "200")
        terminal_s, terminal_cpu = timed(["report", str(run)])
        html_s, html_cpu = timed(["report", str(run), "--html", "--out", str(page_file)])
        size = page_file.stat().st_size / 2**20
        print(f"terminal report (every table):  {terminal_s:6.2f} s wall, {terminal_cpu:6.2f} s CPU")
        print(f"HTML report:                    {html_s:6.2f} s wall, {html_cpu:6.2f} s CPU, {size:.1f} MiB; "
              f"{html_s / RENDER_GOAL_S:.2f}x the {RENDER_GOAL_S:.0f} s goal, {html_s / terminal_s:.2f}x the "
              "terminal report")
        for name, s in open_in_chromium(page_file).items():
            goal = f"; {s / OPEN_GOAL_S:.2f}x the {OPEN_GOAL_S:.0f} s goal" if name in OPEN_GOALED else ""
            print(f"Chromium {name + ':':<24}{s:6.2f} s{goal}")
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
