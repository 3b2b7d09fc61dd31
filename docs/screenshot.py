"""The README's picture of an HTML report: the page opened in headless Chromium (Debian's, driven by playwright), the
gallery filtered to the FigStep rows, and the top of the page down to its third gallery row saved as a PNG with a
256-colour palette (small enough for a repository).

    python docs/screenshot.py runs/report-demo/report.html docs/report.png
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

WIDTH = 1280
# Sections a reader of the README does not need in the picture; the page itself keeps them.
HIDDEN = "#results details, #table-disagreements, #cost, #reproduce { display: none !important; }"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--attack", default="figstep", help="gallery filter for the rows shown")
    ap.add_argument("--items", type=int, default=3, help="gallery rows in the picture")
    a = ap.parse_args()
    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("chromium not on PATH (apt-get install -y chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe)
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        page.goto(a.page.resolve().as_uri(), wait_until="load")
        page.add_style_tag(content=HIDDEN)
        page.locator("#gallery-controls select[data-facet='attack']").select_option(value=a.attack)
        items = page.locator("#gallery .item")
        last = items.nth(min(a.items, items.count()) - 1).bounding_box()
        scroll = page.evaluate("window.scrollY")
        png = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": WIDTH,
                                                    "height": last["y"] + scroll + last["height"] + 12})
        browser.close()
    im = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    im.save(a.out, optimize=True)
    print(f"{a.out}: {im.width} x {im.height} px, {a.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
