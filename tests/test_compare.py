"""Two runs compared (Newcombe intervals checked against the paper's worked examples; row matching) and the norms a
report reads from stored rows, on rows written to and read back from a real store."""

from __future__ import annotations

import pytest

from mmsafe.metrics.compare import changed_verdicts, compare, newcombe
from mmsafe.metrics.perturbation import stored_norms
from mmsafe.metrics.rates import Rate
from mmsafe.runner.store import Store
from mmsafe.types import Response, Row, Sample, Verdict


def _p(k: int, n: int) -> Rate:
    return Rate(k / n, float("nan"), float("nan"), n)


def test_newcombe_matches_the_papers_examples():
    # Newcombe (1998), Table II, method 10: 56/70 - 48/80 and 0/10 - 0/10
    d = newcombe(_p(48, 80), _p(56, 70))
    assert (d.value, round(d.low, 4), round(d.high, 4)) == (pytest.approx(0.2), 0.0524, 0.3339)
    d = newcombe(_p(0, 10), _p(0, 10))
    assert (d.value, round(d.low, 4), round(d.high, 4)) == (0.0, -0.2775, 0.2775)
    d = newcombe(_p(56, 70), _p(48, 80))  # the other way round: the interval mirrors
    assert (round(d.low, 4), round(d.high, 4)) == (-0.3339, -0.0524)
    assert newcombe(_p(1, 2), Rate(float("nan"), float("nan"), float("nan"), 0)) is None


def _rows(tmp_path, name: str, target: str, unsafe: list[bool], extra: int = 0, norms: dict | None = None
          ) -> list[dict]:
    rows = []
    for i, u in enumerate(unsafe + [False] * extra):
        s = Sample(id=f"s{i}", prompt="p", category="c")
        sent = s.with_(metadata={"norms": norms} if norms else {})
        row = Row("mini", s, "none", "none", target, attacked=sent, response=Response(text="a"))
        row.verdicts = [Verdict("keywords", "1", u, not u, None, "compliance" if u else "refusal")]
        rows.append(row)
    store = Store(tmp_path / name)
    store.write(rows)
    out = list(store.rows())
    store.close()
    return out


def test_changed_verdicts_match_rows_across_targets(tmp_path):
    a = _rows(tmp_path, "a", "model-v1", [True, True, False, False])
    b = _rows(tmp_path, "b", "model-v2", [True, False, True, False], extra=2)
    m = changed_verdicts(a, b)  # different targets: matched without the target
    assert [(c.a["sample_id"], c.before, c.after) for c in m.changes] == [("s1", "compliance", "refusal"),
                                                                          ("s2", "refusal", "compliance")]
    assert (m.matched, m.only_a, m.only_b, m.ambiguous) == (4, 0, 2, 0)
    (d,) = compare(a, b, ("attack",))
    assert (d.a.asr.value, d.b.asr.value) == (0.5, pytest.approx(2 / 6))
    assert d.asr == newcombe(d.a.asr, d.b.asr)
    # the same targets in both runs: the target is part of the match
    c = _rows(tmp_path, "c", "model-v1", [True, False, False, False])
    assert len(changed_verdicts(a, c).changes) == 1


def test_stored_norms_read_what_the_attacks_recorded(tmp_path):
    rows = _rows(tmp_path, "n", "t", [True], norms={"linf": 16 / 255, "l2": 3.5, "psnr": 30.0, "ssim": 0.5})
    assert stored_norms(rows) == [{"dataset": "mini", "sample_id": "s0", "attack": "none", "defense": "none",
                                   "target": "t", "linf": 16 / 255, "l2": 3.5, "psnr": 30.0, "ssim": 0.5}]
    # a saved adversarial set scanned with `none`: the norms are top-level fields, named by the crafting attack
    saved = [dict(rows[0], sent_metadata={"attack_spec": "hijack:unknown", "linf": 0.03, "psnr": None})]
    assert stored_norms(saved)[0] == {"dataset": "mini", "sample_id": "s0", "attack": "hijack:unknown",
                                      "defense": "none", "target": "t", "linf": 0.03}
    assert stored_norms(_rows(tmp_path, "plain", "t", [False])) == []
