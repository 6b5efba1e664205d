"""The gate: its rule on figures, and its verdict on a better and on a worse real model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.webapp.factories import decided_request
from tests.webapp.loop_models import (  # noqa: F401 - fixtures
    checkpoints,
    fast_isolation,
    loop_dirs,
    small_catalogue,
)
from webapp.catalog.models import SKU
from webapp.learning.dataset import LabelledRequest
from webapp.learning.gate import Gallery, _outcomes, gate_decide, model_version_gate
from webapp.learning.gate_rule import sign_test
from webapp.learning.models import ModelVersion
from webapp.learning.registry import model_version_register
from webapp.learning.services import index_publish
from webapp.matching.models import Decision

pytestmark = pytest.mark.django_db

LIVE = {"holdout_r1": 0.50, "holdout_r4": 0.80, "holdout_map_r": 0.40,
        "holdout_cold_r1": 0.30, "replay_top1": 0.70, "replay_top4": 0.90}


def _decide(**candidate: float) -> tuple[bool, list[str]]:
    passed, reasons, _checks = gate_decide(
        LIVE, {**LIVE, **candidate}, holdout_queries=50, tolerance=0.01, min_gain=0.0,
        min_holdout=20,
    )
    return passed, reasons


def test_rule_needs_a_recall_gain_and_tolerates_small_drops() -> None:
    assert _decide(holdout_r1=0.55, holdout_r4=0.795, replay_top1=0.695) == (True, [])
    passed, reasons = _decide()  # equal is not better
    assert not passed and "held-out Recall@1" in reasons[0]
    passed, reasons = _decide(holdout_r1=0.60, holdout_map_r=0.38)
    assert not passed and reasons[0].startswith("held-out MAP@R")
    passed, reasons = _decide(holdout_r1=0.60, replay_top4=0.85)
    assert not passed and reasons[0].startswith("replay Top-4")
    passed, reasons = _decide(holdout_r1=0.60, holdout_cold_r1=0.25)
    assert not passed and reasons[0].startswith("held-out R@1, catalogue images only")
    passed, reasons, _ = gate_decide(LIVE, {**LIVE, "holdout_r1": 0.9}, holdout_queries=5,
                                     tolerance=0.01, min_gain=0.0, min_holdout=20)
    assert not passed and "held-out photos" in reasons[0]


def test_sign_test_against_hand_computed_values() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == 1.0
    assert sign_test(0, 5) == pytest.approx(1 / 32)
    assert sign_test(1, 3) == pytest.approx(5 / 16)  # P(X >= 3 | n = 4)


def _paired(n: int, wins: int, losses: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query hits of two models differing on `wins` + `losses` of `n` queries."""
    live = np.zeros(n)
    cand = np.zeros(n)
    cand[:wins] = 1
    live[wins : wins + losses] = 1
    return live, cand


def test_paired_rule_lets_noise_through_but_not_a_real_loss() -> None:
    common = {"holdout_queries": 60, "tolerance": 0.01, "min_gain": 0.0, "min_holdout": 20,
              "max_drop": 0.05, "alpha": 0.05}
    cand = {**LIVE, "holdout_r1": 0.55, "holdout_cold_r1": 0.28}  # cold: -2 points
    # Worse on 4 queries, better on 3: chance. Passes.
    passed, reasons, checks = gate_decide(LIVE, cand, paired={
        "holdout_cold_r1": _paired(60, 3, 4)}, **common)
    assert passed, reasons
    cold = next(c for c in checks if c.name.startswith("held-out R@1, catalogue"))
    assert (cold.wins, cold.losses) == (3, 4) and cold.p_value == pytest.approx(sign_test(3, 4))
    # Worse on 6, better on none: p = 1/64. Refused.
    passed, reasons, _ = gate_decide(LIVE, cand, paired={
        "holdout_cold_r1": _paired(60, 0, 6)}, **common)
    assert not passed and "worse on 6 queries, better on 0" in reasons[0]
    # Beyond the hard cap no test can save it.
    far = {**cand, "holdout_cold_r1": 0.20}
    passed, reasons, _ = gate_decide(LIVE, far, paired={
        "holdout_cold_r1": _paired(60, 5, 6)}, **common)
    assert not passed and "may drop at most 0.050" in reasons[0]


def test_per_query_outcomes_match_ml_evaluate(monkeypatch, settings) -> None:
    """The gate's query-by-query figures average to ml.evaluate's (the exact oracle).

    Embedding ranking only: ml.evaluate has no evidence stage to compare re-ranking with."""
    from ml.evaluate import evaluate_embeddings

    settings.RERANK = False

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)
    gallery_vectors = rng.normal(size=(30, 16)).astype(np.float32)
    gallery_vectors /= np.linalg.norm(gallery_vectors, axis=1, keepdims=True)
    gallery = Gallery(list(range(30)), labels, np.ones(30, bool), [None] * 30)
    requests = [LabelledRequest(i, int(i % 10), (2 * i, 2 * i + 1), (), False, None)
                for i in range(12)]  # type: ignore[arg-type]
    queries = gallery_vectors[np.repeat(np.arange(12) % 10 * 3, 2)] + rng.normal(
        scale=0.9, size=(24, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    monkeypatch.setattr("webapp.learning.gate._query_vectors", lambda ids, ref: queries[list(ids)])
    got = _outcomes(requests, gallery, gallery_vectors, "any")
    want = evaluate_embeddings(gallery_vectors, labels, queries, np.repeat(np.arange(12) % 10, 2),
                               [[2 * i, 2 * i + 1] for i in range(12)])
    assert got["r1"].mean() == pytest.approx(want.recall_at_1)
    assert got["r4"].mean() == pytest.approx(want.recall_at_4)
    assert got["map_r"].mean() == pytest.approx(want.map_at_r)
    assert 0 < want.recall_at_1 < 1  # a case where the metrics are not trivial


@pytest.fixture
def confirmed(small_catalogue, appraiser, settings, monkeypatch) -> None:  # noqa: F811
    """One confirmed photo per SKU; even request ids are held out (a deterministic split)."""
    settings.GATE_MIN_HOLDOUT = 2
    monkeypatch.setattr("webapp.learning.gate.is_holdout", lambda rid, percent=None: rid % 2 == 0)
    skus = list(SKU.objects.order_by("code"))
    for i, sku in enumerate(skus):
        others = [s for s in skus if s != sku][:2]
        decided_request(appraiser=appraiser, truth=sku, shown=[sku, *others],
                        outcome=Decision.Outcome.ACCEPT, scores=[0.99, 0.5, 0.4], seed=11 + i)


def test_gate_refuses_a_worse_model(confirmed, checkpoints) -> None:  # noqa: F811
    worse = model_version_register(model_ref=checkpoints["useless"],
                                   source=ModelVersion.Source.TRAINED)
    worse = model_version_gate(model=worse)
    assert worse.gate == ModelVersion.Gate.REFUSED
    report = worse.gate_report
    figures = report["figures"]
    assert figures["candidate"]["holdout_r1"] < figures["live"]["holdout_r1"]
    assert report["holdout_queries"] == 3 and report["replay_queries"] == 3
    assert any(r.startswith("held-out Recall@1") for r in report["reasons"])
    assert report["live_model_ref"] == checkpoints["good"]


def test_gate_passes_a_better_model(confirmed, checkpoints) -> None:  # noqa: F811
    # The useless model is live; the pretrained network must beat it on every check.
    index_publish(full_rebuild=True, model_ref=checkpoints["useless"])
    better = model_version_register(model_ref=checkpoints["good"],
                                    source=ModelVersion.Source.TRAINED)
    better = model_version_gate(model=better)
    assert better.gate == ModelVersion.Gate.PASSED, better.gate_report["reasons"]
    checks = {c["name"]: c for c in better.gate_report["checks"]}
    assert checks["held-out Recall@1"]["delta"] > 0
    assert all(c["ok"] for c in checks.values())
