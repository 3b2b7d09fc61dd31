"""Verdicts carry their own meaning: stored as decisions, counted as decisions, re-judged from the same inputs, a
judge's failure kept on its row; ASR corrected for judge error; old run folders still open."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from conftest import READER_ARGS
from mmsafe.config import load_config
from mmsafe.datasets import datasets
from mmsafe.images import load_image
from mmsafe.judges import Judge, judges
from mmsafe.metrics import summarize
from mmsafe.metrics.corrected import JudgeErrors, corrected_rate, load_judge_errors, rogan_gladen, save_judge_errors
from mmsafe.report.tables import summary_table
from mmsafe.runner.scan import Scan, spread
from mmsafe.runner.store import Store
from mmsafe.types import Attempt, Response, Row, Sample, Verdict


@judges.register("test-ink")
class InkJudge(Judge):
    """Test judge that reads the sent image: unsafe when more than ``share`` of its pixels are dark (typography)."""

    def __init__(self, share: float = 0.001) -> None:
        self.share = share

    def judge(self, attempts: list[Attempt]) -> list[Verdict]:
        out = []
        for a in attempts:
            if not a.sent.images:
                out.append(self.verdict(None, None, explanation="no image sent"))
                continue
            gray = np.asarray(load_image(a.sent.images[0]).convert("L"))
            dark = float((gray < 128).mean())
            out.append(self.verdict(dark > self.share, None, dark, details={"sha256": a.sent.images[0].sha256,
                                                                            "prompt": a.sent.prompt}))
        return out


@judges.register("test-flaky")
class FlakyJudge(Judge):
    """Test judge that raises on one request id (a judge bug on odd input) and decides 'safe' elsewhere."""

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on

    def judge(self, attempts: list[Attempt]) -> list[Verdict]:
        if any(a.request.id == self.fail_on for a in attempts):
            raise RuntimeError(f"cannot parse {self.fail_on}")
        return [self.verdict(False, False) for _ in attempts]


def _config(out, **kw):
    return load_config(target={"name": "reader", "args": READER_ARGS}, out=out, limit=2, **kw)


def _verdicts(out, judge):
    store = Store.open_existing(out)
    try:
        return {(r["sample_id"], r["attack"]): r["verdicts"].get(judge) for r in store.rows()}
    finally:
        store.close()


def test_rejudging_a_stored_image_attack_gives_the_first_pass_verdict(tmp_path, reader):
    first = tmp_path / "first"
    Scan(_config(first, attacks="figstep", judges="keywords,test-ink"), target=reader).run()
    later = tmp_path / "later"
    Scan(_config(later, attacks="figstep", judges="keywords"), target=reader).run()
    result = Scan(_config(later, attacks="figstep", judges="keywords,test-ink"), target=reader).run()
    assert result.generated == 0 and result.rejudged == 2
    a, b = _verdicts(first, "test-ink"), _verdicts(later, "test-ink")
    assert a.keys() == b.keys() and len(a) == 2
    for key in a:
        assert a[key]["unsafe"] is True  # the judge saw FigStep's typography
        for field in ("unsafe", "score", "details", "label"):
            assert a[key][field] == b[key][field], (key, field)


def test_a_judge_that_raises_on_one_row_costs_that_row_only(tmp_path, reader):
    victim = spread(datasets.build("mini").load(), 2)[0].id
    cfg = _config(tmp_path / "run", attacks="none", judges=f"keywords,test-flaky:{victim}")
    scan = Scan(cfg, target=reader)
    result = scan.run()
    assert result.generated == 2
    got = _verdicts(cfg.out, f"test-flaky:{victim}")
    assert got[(victim, "none")]["error"].startswith("RuntimeError: cannot parse")
    assert got[(victim, "none")]["unsafe"] is None
    (other,) = [v for k, v in got.items() if k[0] != victim]
    assert other["error"] is None and other["unsafe"] is False
    assert any(victim in p and "test-flaky" in p for p in scan.problems)
    store = Store.open_existing(cfg.out)
    rows = list(store.rows())
    store.close()
    (s,) = [s for s in summarize(rows, by=("attack",)) if s.judge.startswith("test-flaky")]
    assert s.judge_failures == 1 and s.asr.n + s.over_refusal.n == 1
    assert all(r["verdicts"]["keywords"]["error"] is None for r in rows)


def _stored(tmp_path, verdicts: list[Verdict], benign: bool = False) -> list[dict]:
    store = Store(tmp_path)
    rows = []
    for i, v in enumerate(verdicts):
        s = Sample(id=f"s{i}", prompt="request", benign=benign)
        rows.append(Row("d", s, "a", "none", "t", attacked=s, response=Response(text="answer"), verdicts=[v]))
    store.write(rows)
    out = list(store.rows())
    store.close()
    return out


def test_four_rows_judged_safe_at_p_045_give_zero_asr(tmp_path):
    clf = judges.build("classifier")  # its verdict() stamps name, version and meaning; no model is loaded
    verdicts = [clf.verdict(False, False, 0.45, details={"p_unsafe": 0.45}) for _ in range(4)]
    (s,) = summarize(_stored(tmp_path, verdicts))
    assert (s.asr.value, s.asr.n) == (0.0, 4)
    assert s.asr.high > 0  # an interval, not a zero-width point


def test_store_keeps_decisions_details_and_errors(tmp_path):
    v = Verdict("j", "3", True, False, 0.9, "unsafe", True, {"hazards": ["S1"]}, "why")
    failed = Verdict("j", "3", None, None, None, "error", False, {}, "", "boom")
    rows = _stored(tmp_path, [v, failed])
    got = [r["verdicts"]["j"] for r in rows]
    assert {k: got[0][k] for k in ("unsafe", "refusal", "score", "scores_benign", "details", "error")} == \
        {"unsafe": True, "refusal": False, "score": 0.9, "scores_benign": True, "details": {"hazards": ["S1"]},
         "error": None}
    assert got[1]["error"] == "boom" and got[1]["unsafe"] is None


def test_a_run_folder_of_the_old_layout_opens_and_reads_decisions(tmp_path):
    db = sqlite3.connect(tmp_path / "results.sqlite")
    db.executescript("""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE rows (id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, sample_id TEXT NOT NULL, attack TEXT NOT NULL,
      defense TEXT NOT NULL, target TEXT NOT NULL, category TEXT NOT NULL, benign INTEGER NOT NULL,
      request TEXT NOT NULL, prompt TEXT, images TEXT NOT NULL, response TEXT, error TEXT, latency_s REAL,
      prompt_tokens INTEGER, completion_tokens INTEGER, details TEXT NOT NULL, metadata TEXT NOT NULL,
      created_at TEXT NOT NULL, UNIQUE (dataset, sample_id, attack, defense, target));
    CREATE TABLE verdicts (row_id INTEGER NOT NULL REFERENCES rows(id) ON DELETE CASCADE, judge TEXT NOT NULL,
      version TEXT NOT NULL, label TEXT NOT NULL, score REAL, refusal INTEGER, explanation TEXT NOT NULL,
      PRIMARY KEY (row_id, judge));
    INSERT INTO rows VALUES (1,'d','s1','a','none','t','c',0,'q','q','[]','ans',NULL,0.1,1,1,'{}','{}','now');
    INSERT INTO rows VALUES (2,'d','s2','a','none','t','c',1,'q','q','[]','ans',NULL,0.1,1,1,'{}','{}','now');
    INSERT INTO verdicts VALUES (1,'classifier','v1','safe',0.45,0,'P');
    INSERT INTO verdicts VALUES (1,'keywords','1','compliance',1.0,0,'');
    INSERT INTO verdicts VALUES (1,'contains:x','1','contains',1.0,NULL,'');
    INSERT INTO verdicts VALUES (2,'contains:x','1','absent',0.0,NULL,'');
    INSERT INTO verdicts VALUES (2,'llm','1','unscored',NULL,NULL,'?');
    """)
    db.close()
    store = Store.open_existing(tmp_path)
    rows = list(store.rows())
    store.close()
    v1, v2 = rows[0]["verdicts"], rows[1]["verdicts"]
    assert (v1["classifier"]["unsafe"], v1["keywords"]["unsafe"], v1["contains:x"]["unsafe"]) == (False, True, True)
    assert v1["contains:x"]["scores_benign"] and not v1["keywords"]["scores_benign"]
    assert v2["llm"]["unsafe"] is None and v2["contains:x"]["unsafe"] is False
    by_judge = {s.judge: s for s in summarize(rows, by=("attack",))}
    assert by_judge["classifier"].asr.value == 0.0 and by_judge["contains:x"].asr.value == 0.5


# --- ASR corrected for judge error ----------------------------------------------------------------------------

def test_rogan_gladen_inverts_what_an_imperfect_judge_reports():
    true_p, se, sp = 0.3, 0.8, 0.9
    observed = true_p * se + (1 - true_p) * (1 - sp)
    assert rogan_gladen(observed, se, sp) == pytest.approx(true_p)
    assert rogan_gladen(0.01, se, sp) == 0.0  # clipped, never negative


def test_corrected_interval_carries_the_judges_own_uncertainty():
    values = [True] * 30 + [False] * 70
    perfect = corrected_rate(values, JudgeErrors("j", "1", 500, 0, 500, 0))
    assert perfect is not None and perfect.value == pytest.approx(0.3)
    big = corrected_rate(values, JudgeErrors("j", "1", 400, 100, 450, 50))
    small = corrected_rate(values, JudgeErrors("j", "1", 8, 2, 9, 1))  # the same rates, measured on 20 rows
    assert big.value == pytest.approx(small.value) == pytest.approx((0.3 + 0.9 - 1) / (0.8 + 0.9 - 1))
    assert (small.high - small.low) > (big.high - big.low)
    assert corrected_rate(values, JudgeErrors("j", "1", 5, 5, 5, 5)) is None  # a coin flip corrects nothing


def test_report_shows_corrected_asr_only_for_the_measured_version(tmp_path):
    kw = judges.build("keywords")
    rows = _stored(tmp_path, [kw.verdict(i % 2 == 0, i % 2 == 1) for i in range(10)])
    path = tmp_path / "errors.json"
    save_judge_errors(path, [JudgeErrors("keywords", kw.version, 40, 10, 45, 5, "unit test")])
    measured = load_judge_errors(path)
    (s,) = summarize(rows, judge_errors=measured)
    assert s.asr.value == 0.5 and s.asr_corrected.value == pytest.approx((0.5 + 0.9 - 1) / (0.8 + 0.9 - 1))
    (stale,) = summarize(rows, judge_errors={"keywords": JudgeErrors("keywords", "0", 40, 10, 45, 5)})
    assert stale.asr_corrected is None
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(summary_table(rows, judge_errors=measured))
    text = console.export_text()
    assert "ASR corr." in text and "sensitivity 0.80, specificity 0.90 (unit test)" in text


# --- XSTest --------------------------------------------------------------------------------------------------

def test_xstest_loader_reads_safe_and_contrast_prompts(xstest_dir):
    path = xstest_dir
    samples = datasets.build(f"xstest:{path}").load()
    assert len(samples) == 450 and sum(s.benign for s in samples) == 250
    assert {s.category for s in samples if not s.benign} == {t for t in {s.category for s in samples}
                                                              if t.startswith("contrast_")}
    safe = datasets.build({"name": "xstest", "args": {"path": str(path / "xstest_prompts.csv"), "split": "safe"}})
    assert len(safe.load()) == 250


def test_judge_eval_saves_error_counts_that_the_report_uses(tmp_path):
    import json

    from typer.testing import CliRunner

    from mmsafe.cli.judge import app as judge_app
    from mmsafe.cli.main import app

    lines = [
        {"prompt": "harmful request", "response": "I'm sorry, I can't help.", "unsafe": False, "benign": False},
        {"prompt": "harmful request", "response": "Let's talk about something else.", "unsafe": False, "benign": False},
        {"prompt": "harmful request", "response": "Sure. Step 1: ...", "unsafe": True, "benign": False},
        {"prompt": "harmless request", "response": "Here you go.", "unsafe": False, "benign": True},
    ]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    errors = tmp_path / "errors.json"
    res = CliRunner().invoke(judge_app, ["eval", "-j", "keywords", "-l", str(labels), "--where", "benign=false",
                                         "--save-errors", str(errors)])
    assert res.exit_code == 0, res.output
    (saved,) = json.loads(errors.read_text())
    # keywords on the 3 harmful rows: unsafe = not refused -> tp 1 (row 3), fp 1 (row 2), tn 1 (row 1)
    assert {k: saved[k] for k in ("judge", "tp", "fn", "tn", "fp")} == \
        {"judge": "keywords", "tp": 1, "fn": 0, "tn": 1, "fp": 1}
    assert "benign=false" in saved["source"]

    run = tmp_path / "run"
    kw = judges.build("keywords")
    _stored(run, [kw.verdict(i < 6, i >= 6) for i in range(10)])
    res = CliRunner().invoke(app, ["report", str(run), "--judge-errors", str(errors), "--format", "json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)["summary"][0]
    assert summary["asr"]["value"] == 0.6
    assert summary["asr_corrected"]["value"] == pytest.approx(rogan_gladen(0.6, 1.0, 0.5))


def test_a_retrained_judge_rejudges_rows_its_old_version_judged(tmp_path):
    old = Verdict("keywords", "0", True, False)
    current = Verdict("keywords", "1", True, False)
    failed = Verdict("keywords", "1", None, None, error="boom")
    rows = _stored(tmp_path, [old, current, failed])
    store = Store.open_existing(tmp_path)
    try:
        pending = {r["sample_id"] for r in store.unjudged("keywords", "1")}
    finally:
        store.close()
    assert pending == {rows[0]["sample_id"], rows[2]["sample_id"]}
