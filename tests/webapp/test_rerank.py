"""Re-ranking in the app: evidence stored per candidate, shown on the page and in the API,
reference evidence published with the index, fusion refitted on decisions."""

from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings

from tests.webapp.conftest import demo_photo_upload, logged_in
from tests.webapp.factories import CandidateFactory, DecisionFactory, MatchRequestFactory
from webapp import ml_gateway
from webapp.catalog.models import SKU
from webapp.learning.models import IndexVersion
from webapp.learning.services import index_publish
from webapp.matching.calibration import (
    active_fusion,
    confident_threshold,
    fusion_recalibrate,
    thresholds_recalibrate,
)
from webapp.matching.models import Decision, FusionWeights, MatchRequest
from webapp.matching.requests import match_request_create
from webapp.matching.runner import match_request_run

pytestmark = pytest.mark.django_db


def _run(appraiser, code: str = "DEMO-MAI-LUN-01") -> MatchRequest:
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload(code)])
    assert match_request_run(request_id=request.pk)
    request.refresh_from_db()
    return request


def test_index_publish_writes_reference_evidence_with_the_version(catalogue: IndexVersion):
    store = ml_gateway.reference_store(catalogue.name)
    assert store is not None
    assert len(store) == catalogue.vector_count
    assert (ml_gateway.index_path(catalogue.name) / "rerank" / "meta.json").is_file()
    # Catalogue images are the primary references (weighted more, read by OCR).
    assert all(store.is_primary(i) for i in store.ids().tolist())
    assert all(len(store.get(i).features) > 0 for i in store.ids().tolist())


def test_an_incremental_publish_reuses_the_parent_evidence(catalogue: IndexVersion):
    sku = SKU.objects.get(code="DEMO-KIR-SUM-01")
    sku.is_active = False
    sku.save()
    child = index_publish()
    assert child.parent_id == catalogue.pk
    store = ml_gateway.reference_store(child.name)
    assert store is not None and len(store) == child.vector_count < catalogue.vector_count


def test_a_match_stores_evidence_and_the_confident_flag(appraiser, catalogue):
    request = _run(appraiser)
    candidates = list(request.candidates.all())
    top = candidates[0]
    assert top.sku.code == "DEMO-MAI-LUN-01"
    assert top.evidence["sku_id"] == top.sku_id
    assert top.score == pytest.approx(top.evidence["probability"], abs=1e-4)  # JSON: 4 places
    spatial = top.evidence["spatial"]
    assert spatial["inliers"] >= 8 and len(spatial["query_points"]) > 0
    assert set(top.evidence["contributions"]) >= {"visual", "spatial"}
    assert request.confident is not None
    assert request.confident == (top.score >= confident_threshold(top.sku.category))
    assert "rerank_spatial" in request.timings_ms
    # Same line, other colours: the colour check keeps them below the right one.
    same_line = [c for c in candidates[1:] if c.sku.series_id == top.sku.series_id]
    for c in same_line:
        if c.evidence.get("spatial"):
            assert c.evidence["spatial"]["colour_inliers"] < spatial["colour_inliers"]


def test_without_reranking_scores_stay_visual(appraiser, catalogue, settings):
    settings.RERANK = False
    request = _run(appraiser)
    top = request.candidates.first()
    assert top.evidence == {}
    assert top.score == pytest.approx((top.cosine + 1) / 2, abs=1e-6)
    assert "rerank_spatial" not in request.timings_ms


def test_typed_text_is_evidence(appraiser, catalogue, settings):
    """The stage takes the request's typed text (MatchRequest.query_text from the partner
    issue); here through the gateway's plain input directly."""
    from ml.images import load_rgb

    photo = demo_photo_upload("DEMO-VEL-MER-01")
    image = load_rgb(photo.read())
    (plain,) = ml_gateway.match_batch([ml_gateway.MatchQuery([image])], top_k=6)
    typed = ml_gateway.MatchQuery([image], query_text="Velluto Mercato striped canvas tote")
    (with_text,) = ml_gateway.match_batch([typed], top_k=6)
    evidence = {int(e["sku_id"]): e for e in with_text.evidence}  # JSON, as stored
    top = with_text.candidates[0].sku_id
    assert SKU.objects.get(pk=top).series.name == "Mercato"
    assert evidence[top]["query_text"]["score"] > 0
    assert evidence[top]["contributions"]["query_text"] > 0
    assert with_text.candidates[0].score >= plain.candidates[0].score


def test_result_page_draws_the_evidence(appraiser, catalogue):
    request = _run(appraiser)
    page = logged_in(appraiser).get(f"/match/{request.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'class="evidence-view"' in html and 'class="match"' in html
    assert "Why this candidate?" in html and 'class="contributions"' in html
    assert "keypoints agree in position" in html


def test_api_returns_evidence_and_confident(appraiser, catalogue):
    request = _run(appraiser)
    response = logged_in(appraiser).get(f"/api/v1/matches/{request.pk}")
    body = response.json()
    assert response.status_code == 200
    assert body["confident"] is request.confident
    first = body["candidates"][0]
    assert first["evidence"]["spatial"]["inliers"] >= 8
    assert first["evidence"]["probability"] == pytest.approx(first["score"], abs=1e-4)
    assert len(first["evidence"]["spatial"]["query_points"][0]) == 2
    json.dumps(body)  # plain JSON


def _decided_requests(appraiser, catalogue, n: int) -> None:
    """n decided requests whose right candidate has more spatial evidence than the wrong."""
    photo_request = _run(appraiser)
    photo = photo_request.photos.get()
    skus = list(SKU.objects.all()[:3])
    for i in range(n):
        request = MatchRequestFactory(created_by=appraiser)
        right_rank = 1 if i % 4 else 2  # a quarter of them the right one was second
        rows = []
        for rank, sku in enumerate(skus, start=1):
            right = rank == right_rank
            features = {"visual": 0.8 - 0.01 * rank, "visual_gap": -0.01 * (rank - 1),
                        "spatial": 3.0 + (i % 3) * 0.2 if right else 0.5 * (i % 2),
                        "text": 0.0}
            rows.append(CandidateFactory(
                request=request, rank=rank, sku=sku, score=0.5, cosine=0.6, query_photo=photo,
                evidence={"sku_id": sku.pk, "features": features}))
        DecisionFactory(request=request, outcome=Decision.Outcome.ACCEPT, decided_by=appraiser,
                        sku=skus[right_rank - 1], candidate=rows[right_rank - 1])


def test_fusion_is_refitted_on_decisions(appraiser, catalogue, settings):
    settings.FUSION_MIN_DECISIONS = 20
    _decided_requests(appraiser, catalogue, 10)
    assert fusion_recalibrate() is None  # not enough decisions yet: the default stays
    assert active_fusion().source == "default"
    _decided_requests(appraiser, catalogue, 30)
    row = fusion_recalibrate()
    assert row is not None and row.decisions >= 40
    fitted = active_fusion()
    assert fitted.source.startswith("decisions:")
    assert fitted.weights["spatial"] > 0
    # The fitted threshold becomes the default for categories without their own...
    category = SKU.objects.first().category
    assert confident_threshold(category) == pytest.approx(row.threshold)
    # ...and thresholds are refitted on the fused scores (re-scored from stored features).
    thresholds_recalibrate(target_precision=0.9, min_support=5)
    assert FusionWeights.objects.count() == 1


def test_the_daily_task_refits_both(appraiser, catalogue, settings):
    from webapp.matching.tasks import recalibrate_thresholds

    settings.FUSION_MIN_DECISIONS = 20
    _decided_requests(appraiser, catalogue, 24)
    recalibrate_thresholds()
    assert FusionWeights.objects.count() == 1
    assert "thresholds-daily" in django_settings.CELERY_BEAT_SCHEDULE
