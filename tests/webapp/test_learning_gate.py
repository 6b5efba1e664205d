"""The gate: its rule on figures, and its verdict on a better and on a worse real model."""

from __future__ import annotations

import pytest

from tests.webapp.loop_factories import decided_request
from tests.webapp.loop_models import (  # noqa: F401 - fixtures
    checkpoints,
    fast_isolation,
    loop_dirs,
    small_catalogue,
)
from webapp.catalog.models import SKU
from webapp.learning.gate import gate_decide, model_version_gate
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
