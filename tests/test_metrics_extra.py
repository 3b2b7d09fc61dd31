"""Utility, defense (DSR/RSR), cost, judge agreement and perturbation metrics on rows written to and read back from a
real results store, with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rich.console import Console

from mmsafe.metrics import summarize
from mmsafe.metrics.agreement import agreement, disagreements
from mmsafe.metrics.cost import cost_summary
from mmsafe.metrics.defense import (defense_success_rate, defense_summary, over_refusal_added, pairs,
                                    refusal_success_rate)
from mmsafe.metrics.perturbation import as_unit, l2, linf, perturbation, psnr, row_perturbations, ssim
from mmsafe.metrics.utility import best, contains, exact_match, normalize, token_f1, utility
from mmsafe.report.agreement import agreement_table, disagreements_table
from mmsafe.runner.store import Store
from mmsafe.types import ImageRef, Response, Row, Sample, Verdict


def _verdict(judge: str, score: float | None, refusal: bool | None = None) -> Verdict:
    unsafe = None if score is None else score >= 0.5
    return Verdict(judge, "1", unsafe, refusal, score, "unscored" if score is None else "unsafe" if unsafe else "safe")


def _row(sid: str, *, benign: bool = False, attack: str = "none", defense: str = "none", text: str = "ok",
         verdicts: dict[str, tuple[float | None, bool | None]] | None = None, error: str | None = None,
         latency: float | None = 0.5, tokens: tuple[int | None, int | None] = (10, 5),
         images: tuple[ImageRef, ...] = ()) -> Row:
    sample = Sample(id=sid, prompt=f"request {sid}", benign=benign, category="c")
    resp = Response(text="" if error else text, error=error, latency_s=latency, prompt_tokens=tokens[0],
                    completion_tokens=tokens[1])
    row = Row("ds", sample, attack, defense, "tgt", attacked=sample.with_(images=images), response=resp)
    row.verdicts = [] if error else [_verdict(j, s, r) for j, (s, r) in (verdicts or {}).items()]
    return row


def _stored(tmp_path, rows: list[Row]) -> list[dict]:
    store = Store(tmp_path / "run")
    store.write(rows)
    out = list(store.rows())
    store.close()
    return out


# --- utility -------------------------------------------------------------------------------------------------------

def test_normalisation_and_match_functions():
    assert normalize("  The Cat, sat!  ") == "cat sat"
    assert exact_match("Paris.", "paris") == 1.0
    assert exact_match("It is Paris", "Paris") == 0.0
    # pred tokens {capital, is, paris}, gold {paris}: precision 1/3, recall 1 -> F1 = 0.5
    assert token_f1("The capital is Paris", "Paris") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0 and token_f1("something", "") == 0.0
    assert token_f1("blue whale", "the blue whale") == 1.0
    assert contains("The capital of France is Paris.", "paris") == 1.0
    assert contains("Parisian food is great", "Paris") == 0.0  # whole words only
    assert best(exact_match, "NYC", ["New York City", "nyc"]) == 1.0


def test_utility_over_store_rows(tmp_path):
    rows = _stored(tmp_path, [
        _row("b1", benign=True, text="Paris."),                           # exact, f1 1, contains
        _row("b2", benign=True, text="The answer is 4"),                  # f1 2*(1/3*1)/(4/3) = 0.5, contains
        _row("b3", benign=True, text="I cannot help with that."),         # all 0
        _row("b4", benign=True, error="timeout"),                         # counted as an error, left out
        _row("b5", benign=True, text="no reference"),                     # no answer: left out entirely
        _row("h1", text="harmful rows are not utility"),
    ])
    answers = {"b1": "paris", "b2": ["4", "four"], "b3": "blue", "b4": "x", "h1": "y"}
    [u] = utility(rows, answers, by=("attack",))
    assert (u.rows, u.errors, u.exact.n) == (4, 1, 3)
    assert u.exact.value == pytest.approx(1 / 3)
    assert u.f1.value == pytest.approx((1 + 0.5 + 0) / 3)
    assert u.contains.value == pytest.approx(2 / 3)
    assert u.exact.low <= u.exact.value <= u.exact.high
    # The reference can also come from the row's stored sample metadata.
    with_meta = [{**r, "metadata": {"answer": answers.get(r["sample_id"])}} for r in rows]
    assert utility(with_meta, by=("attack",))[0].contains.value == pytest.approx(2 / 3)


# --- defense -------------------------------------------------------------------------------------------------------

J = "j"


def _defense_rows(tmp_path) -> list[dict]:
    """Harmful pairs (baseline -> guard):
    h1 unsafe->safe, answered->refused   h2 unsafe->unsafe, answered->answered
    h3 safe->safe (baseline refused)     h4 unsafe->unscored, answered->None
    h5 unsafe->error                     h6 unsafe->safe, answered->answered
    Benign pairs: b1 answered->refused, b2 answered->answered, b3 refused->refused, b4 answered->answered.
    DSR = {h1, h2, h6} -> 2/3; RSR = {h1, h2, h6} -> 1/3; over-refusal added = {b1, b2, b4} -> 1/3."""
    base = {"h1": (1.0, False), "h2": (1.0, False), "h3": (0.0, True), "h4": (1.0, False), "h5": (1.0, False),
            "h6": (0.8, False), "b1": (0.0, False), "b2": (0.0, False), "b3": (0.0, True), "b4": (0.0, False)}
    guard = {"h1": (0.0, True), "h2": (1.0, False), "h3": (0.0, True), "h4": (None, None), "h6": (0.2, False),
             "b1": (0.0, True), "b2": (0.0, False), "b3": (0.0, True), "b4": (0.0, False)}
    rows = [_row(s, benign=s.startswith("b"), verdicts={J: v}) for s, v in base.items()]
    rows += [_row(s, benign=s.startswith("b"), defense="guard", verdicts={J: v}) for s, v in guard.items()]
    rows.append(_row("h5", defense="guard", error="target crashed"))
    rows.append(_row("h7", defense="guard", verdicts={J: (0.0, True)}))  # no baseline row: not a pair
    return _stored(tmp_path, rows)


def test_dsr_rsr_on_hand_made_pairs(tmp_path):
    rows = _defense_rows(tmp_path)
    assert len(pairs(rows, "guard")) == 10
    dsr = defense_success_rate(rows, "guard", J)
    assert (dsr.value, dsr.n) == (pytest.approx(2 / 3), 3)
    rsr = refusal_success_rate(rows, "guard", J)
    assert (rsr.value, rsr.n) == (pytest.approx(1 / 3), 3)
    orr = over_refusal_added(rows, "guard", J)
    assert (orr.value, orr.n) == (pytest.approx(1 / 3), 3)
    assert dsr.low <= dsr.value <= dsr.high
    assert defense_success_rate(rows, "guard", "other-judge").n == 0


def test_defense_summary_groups(tmp_path):
    rows = _defense_rows(tmp_path)
    [s] = defense_summary(rows, by=())
    assert s.group == {"defense": "guard"} and s.judge == J and s.pairs == 10
    assert s.dsr.value == pytest.approx(2 / 3) and s.rsr.value == pytest.approx(1 / 3)
    assert s.as_dict()["dsr"]["n"] == 3
    [g] = defense_summary(rows)
    assert g.group == {"dataset": "ds", "target": "tgt", "attack": "none", "defense": "guard"}
    with pytest.raises(ValueError, match="subset"):
        defense_summary(rows, by=("category",))


# --- cost ----------------------------------------------------------------------------------------------------------

def test_cost_summary(tmp_path):
    rows = _stored(tmp_path, [
        _row("a", latency=1.0, tokens=(100, 20)),
        _row("b", latency=3.0, tokens=(300, 40)),
        _row("c", latency=None, tokens=(None, None), error="image unreadable"),
        _row("d", attack="figstep", latency=2.0, tokens=(50, 10)),
    ])
    by_attack = {c.group["attack"]: c for c in cost_summary(rows, by=("attack",))}
    none = by_attack["none"]
    assert none.rows == 3
    assert (none.seconds.total, none.seconds.per_row.value, none.seconds.per_row.n) == (4.0, 2.0, 2)
    assert (none.prompt_tokens.total, none.prompt_tokens.per_row.value) == (400.0, 200.0)
    assert (none.completion_tokens.total, none.completion_tokens.per_row.value) == (60.0, 30.0)
    [total] = cost_summary(rows, by=())
    assert (total.rows, total.seconds.total, total.prompt_tokens.total) == (4, 6.0, 450.0)


# --- agreement -----------------------------------------------------------------------------------------------------

def _agreement_rows(tmp_path) -> list[dict]:
    # a vs b on unsafe: 8 of 10 agree, each says unsafe half the time -> p_o 0.8, p_e 0.5, kappa 0.6.
    a = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    b = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    rows = []
    for i, (x, y) in enumerate(zip(a, b)):
        rows.append(_row(f"s{i}", verdicts={"a": (float(x), not x), "b": (float(y), None), "c": (1.0, False)}))
    rows.append(_row("s10", verdicts={"a": (1.0, False), "b": (None, None), "c": (0.0, True)}))  # b unscored
    rows.append(_row("s11", error="boom"))
    return _stored(tmp_path, rows)


def test_agreement_kappa_on_known_data(tmp_path):
    rows = _agreement_rows(tmp_path)
    by_pair = {(p.judge_a, p.judge_b): p for p in agreement(rows)}
    assert set(by_pair) == {("a", "b"), ("a", "c"), ("b", "c")}
    ab = by_pair[("a", "b")]
    assert ab.unsafe.n == 10
    assert ab.unsafe.agreement.value == pytest.approx(0.8)
    assert ab.unsafe.kappa.value == pytest.approx(0.6)
    assert ab.unsafe.kappa.low <= 0.6 <= ab.unsafe.kappa.high
    assert ab.refusal is None  # b never gives a refusal opinion
    ac = by_pair[("a", "c")]
    # c: unsafe on s0-s9, safe on s10; a: unsafe on s0-s4, s10 -> agree on s0-s4 only
    assert ac.unsafe.n == 11 and ac.unsafe.agreement.value == pytest.approx(5 / 11)
    assert ac.refusal.n == 11
    # c calls every row b scored unsafe: agreement 1/2, chance agreement 1/2 -> kappa 0.
    assert by_pair[("b", "c")].unsafe.kappa.value == pytest.approx(0.0)


def test_disagreements_and_report_tables(tmp_path):
    rows = _agreement_rows(tmp_path)
    found = disagreements(rows, judges=["a", "b"])
    assert [d.row["sample_id"] for d in found] == ["s4", "s9"]
    assert all(d.on == ("unsafe",) for d in found)
    # With c: s4 (b), s5-s9 (c on unsafe, a vs c on refusal), s10 (a vs c on both).
    assert [d.row["sample_id"] for d in disagreements(rows)] == ["s4", "s5", "s6", "s7", "s8", "s9", "s10"]
    console = Console(record=True, width=200)
    console.print(agreement_table(rows))
    console.print(disagreements_table(rows, limit=2))
    text = console.export_text()
    assert "a / b" in text and "0.60" in text and "80 [" in text
    assert "ds:s4" in text and "ds:s5" in text and "ds:s6" not in text  # limit 2
    assert "7 of 11 rows split the judges; first 2 shown" in text


# --- perturbation --------------------------------------------------------------------------------------------------

def test_norms_on_known_arrays():
    clean = np.zeros((4, 4, 3), dtype=np.uint8)
    attacked = clean.copy()
    attacked[1, 2, 0] = 16
    assert linf(clean, attacked) == pytest.approx(16 / 255)
    assert l2(clean, attacked) == pytest.approx(16 / 255)
    a = np.zeros((2, 2))
    b = a.copy()
    b[:] = 0.1
    assert l2(a, b) == pytest.approx(0.2)  # sqrt(4 * 0.01)
    assert psnr(a, b) == pytest.approx(20.0)  # MSE 0.01 -> 10 log10(1 / 0.01)
    assert psnr(a, a) == math.inf
    assert as_unit(np.full((2, 2), 255, dtype=np.uint8)).max() == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        linf(np.zeros((2, 2)), np.zeros((2, 3)))


def test_ssim_closed_forms():
    rng = np.random.default_rng(0)
    img = rng.random((20, 24, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    # Two flat images: variances and covariance vanish, SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    c1 = 0.01 ** 2
    expected = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    assert ssim(np.full((16, 16), 0.2), np.full((16, 16), 0.6)) == pytest.approx(expected)
    assert ssim(img, 1 - img) < 0  # an inverted image anti-correlates
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_ssim_matches_a_direct_window_by_window_computation():
    rng = np.random.default_rng(1)
    a = rng.random((13, 14))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    r = np.arange(11) - 5
    g = np.exp(-(r ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            x, y = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            mx, my = (w * x).sum(), (w * y).sum()
            vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
            cxy = (w * (x - mx) * (y - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    assert ssim(a, b) == pytest.approx(float(np.mean(values)), rel=1e-9)


def test_row_perturbations_from_a_run(tmp_path):
    from PIL import Image

    clean = np.full((16, 16, 3), 100, dtype=np.uint8)
    noisy = clean.copy()
    noisy[0, 0] = [108, 100, 92]
    rows = _stored(tmp_path, [
        _row("s1", images=(ImageRef.from_pil(Image.fromarray(clean)),)),
        _row("s1", attack="pgd", images=(ImageRef.from_pil(Image.fromarray(noisy)),)),
        _row("s2", attack="pgd", images=(ImageRef.from_pil(Image.fromarray(noisy)),)),  # no clean row
    ])
    [p] = row_perturbations(rows, tmp_path / "run")
    assert (p["sample_id"], p["attack"], p["image"]) == ("s1", "pgd", 0)
    assert p["linf"] == pytest.approx(8 / 255)
    assert p["l2"] == pytest.approx(math.sqrt(2) * 8 / 255)
    assert p == {**p, **perturbation(clean, noisy)}


def test_rows_crafted_through_a_purifier_are_marked_adaptive(tmp_path):
    from mmsafe.report.tables import defense_table, summary_table

    def crafted(row: Row, through: str | None) -> Row:
        row.attacked = row.attacked.with_(metadata={"adaptive": through} if through else {})
        return row

    rows = _stored(tmp_path, [
        crafted(_row("a1", attack="refusal-through-noise", verdicts={J: (0.0, True)}), "gaussian-noise"),
        crafted(_row("a1", attack="refusal-through-noise", defense="gaussian-noise", verdicts={J: (0.0, True)}),
                "gaussian-noise"),
        crafted(_row("p1", attack="refusal", verdicts={J: (0.0, True)}), None),
        crafted(_row("p1", attack="refusal", defense="gaussian-noise", verdicts={J: (0.0, False)}), None),
    ])
    marks = {(s.group["attack"], s.group["defense"]): s.adaptive for s in summarize(rows)}
    assert marks == {("refusal", "gaussian-noise"): "", ("refusal", "none"): "",
                     ("refusal-through-noise", "gaussian-noise"): "gaussian-noise",
                     ("refusal-through-noise", "none"): "gaussian-noise"}
    console = Console(width=200, record=True)
    console.print(summary_table(rows), defense_table(rows))
    lines = console.export_text().splitlines()
    assert "optimised through that purifier" in " ".join(" ".join(lines).split())
    through = [line for line in lines if "refusal-through-noise" in line]
    assert len(through) == 3 and all("gaussian-noise" in line for line in through)  # 2 summary rows, 1 defense row
    plain = [line for line in lines if line.split()[:2] == ["none", "refusal"]]
    assert plain and not any("gaussian-noise" in line for line in plain)
    unmarked = _stored(tmp_path / "plain", [_row("p2", verdicts={J: (0.0, True)})])
    assert "adaptive" not in [c.header for c in summary_table(unmarked).columns]


def test_frontier_keeps_the_defenses_no_other_beats_on_both_rates(tmp_path):
    from mmsafe.metrics.defense import tradeoffs
    from mmsafe.report.tables import frontier_table

    # (harmful rows unsafe, benign rows refused) out of 2 each: none (2, 0), strict (0, 2), balanced (1, 0),
    # worse (1, 1) is beaten by balanced, blunt (0, 2) ties strict and stays
    shape = {"none": (2, 0), "strict": (0, 2), "balanced": (1, 0), "worse": (1, 1), "blunt": (0, 2)}
    rows = []
    for defense, (unsafe, refused) in shape.items():
        rows += [_row(f"h{i}", defense=defense, verdicts={J: (1.0 if i < unsafe else 0.0, False)}) for i in range(2)]
        rows += [_row(f"b{i}", benign=True, defense=defense, verdicts={J: (0.0, i < refused)}) for i in range(2)]
    found = {t.defense: t for t in tradeoffs(_stored(tmp_path, rows))}
    assert {d for d, t in found.items() if t.frontier} == {"strict", "balanced", "blunt"}
    assert found["worse"].asr.value == 0.5 and found["worse"].over_refusal.value == 0.5
    console = Console(width=200, record=True)
    console.print(frontier_table(_stored(tmp_path / "again", rows)))
    lines = console.export_text().splitlines()
    assert {line.split()[0] for line in lines if line.rstrip().endswith("yes")} == {"strict", "blunt", "balanced"}
    assert frontier_table(_stored(tmp_path / "one", rows[:4])) is None  # one defense: nothing to compare
