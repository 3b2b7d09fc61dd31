"""The HTML report in a real headless Chromium (Debian's chromium driven by playwright): a store written through the
real Store API with script tags and HTML in a response, a prompt, a category, an attack name, a judge's explanation
and an image file name; the page must run none of it, show it as text, filter, page, and match the terminal's
numbers. Also the comparison of two runs."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from mmsafe.cli.main import app
from mmsafe.metrics.agreement import disagreements
from mmsafe.runner.store import Store
from mmsafe.types import ImageRef, Response, Row, Sample, Verdict

XSS_RESPONSE = "<script>alert('response')</script><img src=x onerror=alert('response-img')>"
XSS_PROMPT = "</script><script>alert('prompt')</script>"
XSS_CATEGORY = "<b onmouseover=alert('category')>Cat</b>"
XSS_ATTACK = "x<svg onload=alert('attack')>"
XSS_FILE = "\"><img src=x onerror=alert('file')>.png"
XSS_EXPLANATION = "<iframe src=javascript:alert('explanation')>"
SAMPLES = 15  # x 2 attacks x 2 defenses = 60 rows: three pages of 20


def _picture(seed: int) -> Image.Image:
    im = Image.new("RGB", (320, 200), (240, 240, 240))
    ImageDraw.Draw(im).text((10, 10 + seed % 30 * 5), f"image {seed}", fill=(0, 0, 0))
    return im


def _verdicts(unsafe_kw: bool, unsafe_cls: bool, hostile: bool) -> list[Verdict]:
    return [
        Verdict("keywords", "1", unsafe_kw, not unsafe_kw, 1.0 if unsafe_kw else 0.0,
                "compliance" if unsafe_kw else "refusal"),
        Verdict("classifier", "2", unsafe_cls, False, 0.9 if unsafe_cls else 0.1, "unsafe" if unsafe_cls else "safe",
                explanation=XSS_EXPLANATION if hostile else "p(unsafe)"),
    ]


def write_run(out: Path, files: Path, flip: int = 0, target: str = "model-a") -> list[dict]:
    """Rows through the real Store API. Sample 0 carries the hostile strings; ``flip`` samples (from 1) get the
    keyword judge's verdict inverted, for a second run to compare with."""
    files.mkdir(parents=True, exist_ok=True)
    hostile_image = files / XSS_FILE
    _picture(99).save(hostile_image, format="PNG")
    gone = files / "deleted.png"
    _picture(98).save(gone)
    rows = []
    for i in range(SAMPLES):
        hostile = i == 0
        sample = Sample(id=f"s{i}", prompt=XSS_PROMPT if hostile else f"request number {i}",
                        category=XSS_CATEGORY if i % 3 == 0 else f"cat{i % 3}", benign=i % 5 == 4)
        for attack in ("none", XSS_ATTACK):
            images = (ImageRef(path=hostile_image),) if hostile else \
                (ImageRef(path=gone),) if i == 1 and attack == "none" else \
                (ImageRef.from_pil(_picture(i)),) if attack != "none" else ()
            for defense in ("none", "jpeg"):
                unsafe_kw = (i + len(attack)) % 2 == 0 and defense == "none"
                if 1 <= i <= flip and defense == "none" and attack == "none":
                    unsafe_kw = not unsafe_kw
                unsafe_cls = i % 4 == 0
                text = XSS_RESPONSE if hostile else f"answer {i} to {attack} under {defense}"
                # the attacked rows carry the norms a gradient attack records: L∞ i/255
                norms = {"norms": {"linf": i / 255, "l2": 1.0, "psnr": 40.0, "ssim": 0.9}} if attack != "none" else {}
                row = Row("mini", sample, attack, defense, target, attacked=sample.with_(images=images, metadata=norms),
                          response=Response(text=text, latency_s=0.2, prompt_tokens=9, completion_tokens=4))
                row.verdicts = _verdicts(unsafe_kw, unsafe_cls, hostile)
                rows.append(row)
    store = Store(out)
    store.write(rows)
    store.set_meta("config", {"target": {"name": target, "args": {}}, "note": XSS_PROMPT})
    stored = list(store.rows())
    store.close()
    gone.unlink()  # a run folder whose dataset image has since moved: no thumbnail, the page still works
    return stored


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium under playwright: absent locally, a skip; absent in CI (which installs it), a failure."""
    exe = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if exe is None or sync_playwright is None:
        missing = ("chromium not on PATH (apt-get install -y chromium)" if exe is None else
                   "playwright not installed (pip install -e '.[dev]')") + ": the browser tests need it"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe)
        yield browser
        browser.close()


class Page:
    """A report opened in a fresh tab, recording console errors, page errors and dialogs."""

    def __init__(self, browser, path: Path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.resolve().as_uri(), wait_until="load")

    def count(self) -> tuple[int, int]:
        m = re.match(r"(\d+) of (\d+) rows match", self.page.inner_text("#gallery-count"))
        assert m, self.page.inner_text("#gallery-count")
        return int(m.group(1)), int(m.group(2))

    def titles(self) -> list[str]:
        return self.page.locator("#gallery .item .name").all_inner_texts()

    def select(self, facet: str, value: str) -> None:
        self.page.locator(f"#gallery-controls select[data-facet='{facet}']").select_option(value=value)

    def screenshot(self, tmp_path: Path, name: str) -> None:
        shot = tmp_path / name
        self.page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("MMSAFE_SCREENSHOT_DIR"):
            dest = Path(os.environ["MMSAFE_SCREENSHOT_DIR"])
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, dest / name)

    def assert_nothing_ran(self) -> None:
        assert self.dialogs == [], f"a dialog fired: {self.dialogs}"
        assert self.errors == [], f"console errors: {self.errors}"
        # no element the hostile markup would have made, and no script but the page's own
        for selector in ("img[src='x']", "[onerror]", "[onload]", "[onmouseover]", "iframe", "svg[onload]"):
            assert self.page.locator(selector).count() == 0, selector
        scripts = self.page.eval_on_selector_all("script", "els => els.map(e => e.textContent.trim())")
        assert not any(s.startswith("alert(") for s in scripts), "a hostile script tag reached the page"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    rows = write_run(base / "run", base / "files")
    return base, rows


@pytest.fixture(scope="module")
def report_page(run, chromium):
    base, _ = run
    res = CliRunner().invoke(app, ["report", str(base / "run"), "--html", "--out", str(base / "report.html")])
    assert res.exit_code == 0, res.output
    assert "image(s) shown without a thumbnail" in res.output  # the deleted image, named, and the report goes on
    page = Page(chromium, base / "report.html")
    yield page
    page.page.close()


def test_the_page_is_self_contained(run, report_page):
    base, _ = run
    text = (base / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", text), "a script loaded from elsewhere: the page must work offline"
    assert "cdn." not in text.lower().split("</head>")[0].split("<script>")[0]
    assert XSS_RESPONSE not in text and XSS_PROMPT not in text  # escaped wherever they appear


def test_hostile_strings_run_nothing_and_show_as_text(report_page, run, tmp_path):
    base, rows = run
    page = report_page.page
    report_page.assert_nothing_ran()
    # the gallery row with the hostile strings: found by its (hostile) prompt, shown as written
    page.fill("#gallery-controls input[type=search]", "alert('prompt')")
    assert report_page.count()[0] == 4  # sample 0 under 2 attacks x 2 defenses
    card = page.locator("#gallery .item").first
    texts = card.locator(".text").all_inner_texts()
    assert XSS_PROMPT in texts and XSS_RESPONSE in texts
    assert XSS_FILE in card.locator("figcaption").all_inner_texts()
    assert card.locator("img").first.get_attribute("src").startswith("data:image/jpeg;base64,")
    card.locator("li", has_text="classifier").first.hover()  # its title holds the hostile explanation
    assert card.locator("li", has_text="classifier").first.get_attribute("title") == XSS_EXPLANATION
    assert XSS_CATEGORY in card.locator(".tag").all_inner_texts()
    assert XSS_ATTACK in page.locator("#gallery-controls select[data-facet='attack'] option").all_inner_texts()[2]
    # tables and charts show the names as written
    page.locator("#results details summary").click()
    assert XSS_CATEGORY in page.locator("#table-by-category").inner_text()
    ticks = page.locator("#chart-category-heat .ytick text").all_text_contents()
    assert XSS_CATEGORY in ticks, ticks
    page.locator("#results details summary").click()
    page.fill("#gallery-controls input[type=search]", "")
    norms = page.locator("#table-perturbation tbody tr td").all_inner_texts()
    assert norms[:3] == [XSS_ATTACK, str(SAMPLES * 2), f"{(SAMPLES - 1) / 2:.3f}"]  # mean L∞ of 0..14, x255
    report_page.assert_nothing_ran()
    report_page.screenshot(tmp_path, "report-hostile.png")


def test_filters_change_what_is_shown(report_page, run):
    _, rows = run
    page = report_page
    page.page.fill("#gallery-controls input[type=search]", "")
    assert page.count() == (len(rows), len(rows))
    page.select("attack", XSS_ATTACK)
    want = sum(1 for r in rows if r["attack"] == XSS_ATTACK)
    assert page.count() == (want, len(rows))
    assert all(XSS_ATTACK in tags for tags in
               (c.locator(".tag").all_inner_texts() for c in page.page.locator("#gallery .item").all()))
    page.select("defense", "jpeg")
    assert page.count()[0] == sum(1 for r in rows if r["attack"] == XSS_ATTACK and r["defense"] == "jpeg")
    page.select("attack", "")
    page.select("defense", "")
    page.select("verdict", "judges disagree")
    assert page.count()[0] == len(disagreements(rows)) > 0
    page.select("verdict", "classifier: unsafe")
    assert page.count()[0] == sum(1 for r in rows if r["verdicts"]["classifier"]["label"] == "unsafe")
    page.select("verdict", "")
    # the button in the judges section opens the gallery on the disagreements
    page.page.get_by_role("button", name=re.compile("rows where the judges disagree")).click()
    assert page.count()[0] == len(disagreements(rows))
    page.select("verdict", "")
    page.assert_nothing_ran()


def test_paging_builds_one_page_at_a_time(report_page, run):
    _, rows = run
    page = report_page
    assert page.count()[0] == len(rows)
    first = page.titles()
    assert len(first) == 20 and page.page.locator("#gallery .item").count() == 20
    assert "page 1 of 3" in page.page.inner_text("#gallery-pager")
    page.page.get_by_role("button", name="next ›").click()
    second = page.titles()
    assert len(second) == 20 and "page 2 of 3" in page.page.inner_text("#gallery-pager")
    assert [r["sample_id"] for r in rows[20:40]] == [t.split(":", 1)[1] for t in second]
    page.page.get_by_role("button", name="last »").click()
    assert len(page.titles()) == len(rows) - 40
    page.page.locator("#gallery-controls label", has_text="per page").locator("select").select_option("100")
    assert len(page.titles()) == len(rows) and "page 1 of 1" in page.page.inner_text("#gallery-pager")
    page.page.locator("#gallery-controls label", has_text="per page").locator("select").select_option("20")
    page.assert_nothing_ran()


def test_tables_show_the_terminal_reports_numbers(report_page, run, monkeypatch):
    base, _ = run
    monkeypatch.setenv("COLUMNS", "250")
    res = CliRunner().invoke(app, ["report", str(base / "run"), "--no-by-category"])
    assert res.exit_code == 0, res.output
    terminal = " ".join(res.output.split())
    rows = report_page.page.locator("#table-summary tbody tr").all()
    assert len(rows) == 8  # 2 attacks x 2 defenses x 2 judges
    for tr in rows:
        cells = [c.strip() for c in tr.locator("td").all_inner_texts()]
        assert " ".join(" ".join(cells).split()) in terminal, cells
    agreement = report_page.page.locator("#table-agreement tbody tr").first.locator("td").all_inner_texts()
    assert " ".join(" ".join(agreement).split()) in terminal
    column = report_page.page.locator("#table-summary thead th").all_inner_texts().index("ASR")
    asr = {tr.locator("td").nth(column).inner_text() for tr in rows}
    headline = report_page.page.locator(".headline .v").all_inner_texts()
    assert len(headline) == 4 and set(headline) <= asr  # 2 judges x (worst attack, best defense against it)


def test_two_runs_compared(run, chromium, tmp_path):
    base, rows_a = run
    flip = 4
    rows_b = write_run(base / "run-b", base / "files-b", flip=flip, target="model-b")
    out = tmp_path / "compare.html"
    res = CliRunner().invoke(app, ["report", str(base / "run"), str(base / "run-b"), "--html", "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = Page(chromium, out)
    try:
        page.assert_nothing_ran()
        # the flipped samples (1..flip, attack none, defense none), keyword judge only; different targets match
        assert page.count() == (flip, flip)
        assert all(t in {f"mini:s{i}" for i in range(1, flip + 1)} for t in page.titles())
        page.select("change", "keywords: compliance → refusal")
        changed_to_refusal = sum(1 for i in range(1, flip + 1) if (i + 4) % 2 == 0)
        assert page.count()[0] == changed_to_refusal
        deltas = page.page.inner_text("#table-deltas")
        assert "Δ ASR" in deltas and "model-a" not in deltas  # grouped without the target, which changed
        page.screenshot(tmp_path, "report-compare.png")
    finally:
        page.page.close()
    res = CliRunner().invoke(app, ["report", str(base / "run"), str(base / "run-b")])
    assert res.exit_code == 0 and "Verdicts that changed from A to B" in res.output
    assert f"{flip} verdicts changed on {len(rows_a)} rows found in both runs" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["report", str(base / "run"), str(base / "run-b"), "--format", "json"])
    data = json.loads(res.stdout)
    assert [(c["sample_id"], c["judge"]) for c in data["changed"]] == [(f"s{i}", "keywords") for i in range(1, flip + 1)]
    none_none = [d for d in data["deltas"] if d["attack"] == "none" and d["defense"] == "none"
                 and d["judge"] == "keywords"]
    assert none_none[0]["asr"]["value"] == pytest.approx(none_none[0]["b"]["asr"]["value"] -
                                                         none_none[0]["a"]["asr"]["value"])
