"""The appraiser's result page and the QA queue read the database a fixed number of times,
however many candidates, evidence rows or bad cases they show (issue 14's page latency:
docs/benchmarks.md, "Page latency (issue 14)")."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.webapp.conftest import jpeg_bytes, logged_in
from tests.webapp.factories import decided_request
from tests.webapp.test_review_services import skus  # noqa: F401 - fixture
from webapp.catalog.demo import demo_skus, render_photo
from webapp.catalog.models import SKU, SKUImage
from webapp.matching.decisions import decision_record
from webapp.matching.models import Candidate, Decision, MatchRequest, QueryPhoto

pytestmark = pytest.mark.django_db

# What each page may cost, whatever it lists: session, user, roles, the rows and their
# prefetches, the filter choices. A new per-row query breaks the equal-count tests below;
# a new per-page one breaks these bounds.
RESULT_PAGE_QUERIES = 12
QA_QUEUE_QUERIES = 14  # 11 to render, 3 for its ETag (count, the page as values, SKU codes)


def _evidence(reference: SKUImage, photo_index: int, rank: int) -> dict[str, object]:
    """Evidence as the re-ranking stage stores it (ml.rerank.types.CandidateEvidence)."""
    points = [(10.0 + 3 * i, 20.0 + 2 * i) for i in range(24)]
    part = {"x0": 10.0, "y0": 20.0, "x1": 80.0, "y1": 90.0, "inliers": 12}
    return {
        "sku_id": reference.sku_id, "visual_rank": rank, "cosine": 0.8, "probability": 0.7,
        "features": {"visual": 0.8, "spatial": 1.2, "text": 0.3},
        "contributions": {"visual": 1.1, "spatial": 0.4, "text": -0.1},
        "spatial": {
            "query_index": photo_index, "reference_id": reference.pk, "matches": 40,
            "inliers": 24, "colour_inliers": 18.5, "weight": 1.0, "score": 2.9,
            "query_size": [344, 344], "reference_size": [320, 320],
            "query_points": points, "reference_points": points,
            "query_parts": [part], "reference_parts": [part],
        },
        "text": {"score": 0.3, "matches": [{
            "word": "LUNE", "matched": "lune", "source": "series", "similarity": 100.0,
            "weight": 1.0, "box": [12.0, 30.0, 90.0, 44.0], "query_index": photo_index}]},
        "attributes": {"score": 0.2, "matches": [{
            "name": "colour", "expected": "red", "predicted": "red", "probability": 0.9,
            "agrees": True}]},
    }


def _finished_request(appraiser, skus: list[SKU], *, candidates: int, photos: int = 2,  # noqa: F811
                      query_text: str = "red tote") -> MatchRequest:
    """A finished request as the matcher leaves it: photos, ranked candidates with evidence
    naming a catalogue image other than the candidate's own (as spatial verification does)."""
    request = MatchRequest.objects.create(
        created_by=appraiser, status=MatchRequest.Status.DONE, model_version="m|detector|grabcut",
        index_version="idx-test", timings_ms={"detect": 20.0, "embed": 12.0},
        query_text=query_text, soft_attributes={"colour": "red"},
    )
    MatchRequest.objects.filter(pk=request.pk).update(
        finished_at=request.created_at + timedelta(seconds=1))
    request.refresh_from_db()
    spec = next(s for s in demo_skus() if s.code == skus[0].code)
    data = jpeg_bytes(render_photo(spec, 3), quality=80)
    stored = []
    for position in range(photos):
        photo = QueryPhoto(request=request, position=position, original_format="jpeg",
                           width=384, height=384, box=[20.0, 20.0, 364.0, 364.0],
                           box_source=QueryPhoto.BoxSource.DETECTOR, detection_label="handbag",
                           detection_confidence=0.8)
        photo.original.save(f"q{request.pk}-{position}.jpg", ContentFile(data), save=False)
        photo.image.save(f"q{request.pk}-{position}.jpg", ContentFile(data), save=False)
        photo.save()
        stored.append(photo)
    for rank in range(1, candidates + 1):
        sku = skus[(rank - 1) % len(skus)]
        images = list(sku.images.order_by("position", "pk"))
        Candidate.objects.create(
            request=request, rank=rank, sku=sku, score=0.9 - 0.05 * rank, cosine=0.8,
            query_photo=stored[rank % photos], reference_image=images[0],
            evidence=_evidence(images[-1], rank % photos, rank),
        )
    return request


def _queries(client, url: str, **headers: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **headers)
    assert response.status_code == 200
    return len(captured.captured_queries), response.content.decode()


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx partial", "full page"])
def test_result_page_queries_do_not_grow_with_candidates(appraiser, skus, htmx) -> None:  # noqa: F811
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    client = logged_in(appraiser)
    few = _finished_request(appraiser, skus, candidates=2, photos=1)
    many = _finished_request(appraiser, skus, candidates=8, photos=3)
    client.get(reverse("matching:detail", args=[few.pk]), **headers)  # session, caches warm
    few_count, few_body = _queries(client, reverse("matching:detail", args=[few.pk]), **headers)
    many_count, many_body = _queries(client, reverse("matching:detail", args=[many.pk]),
                                     **headers)
    # The page shows everything it did: every candidate, its drawn evidence and attributes.
    assert many_body.count('<li class="candidate') == 8
    assert many_body.count('class="evidence-view"') == 8
    assert many_body.count('class="match"') == 8 * 24
    assert "LUNE" in many_body and "Model sees" in many_body
    for candidate in many.candidates.all():  # drawn beside the image verification matched
        verified = SKUImage.objects.get(pk=candidate.evidence["spatial"]["reference_id"])
        assert verified != candidate.reference_image
        assert f'<image href="{verified.image.url}" x="' in many_body
    assert many_count == few_count, "a query per candidate, photo or evidence row is back"
    assert many_count <= RESULT_PAGE_QUERIES


def test_decided_result_page_with_a_gap_stays_within_bound(appraiser, skus) -> None:  # noqa: F811
    client = logged_in(appraiser)
    match = _finished_request(appraiser, skus, candidates=8)
    decision_record(request=match, user=appraiser, outcome=Decision.Outcome.NEW_SKU,
                    note="a red tote with a zip")
    url = reverse("matching:detail", args=[match.pk])
    client.get(url)
    count, body = _queries(client, url)
    assert 'id="gap-opened"' in body and "a red tote with a zip" in body
    assert 'id="undo"' in body
    assert count <= RESULT_PAGE_QUERIES


def _bad_cases(appraiser, skus: list[SKU], count: int) -> None:  # noqa: F811
    for i in range(count):
        shown = [s for j, s in enumerate(skus) if j != i % len(skus)][:3]
        outcome = Decision.Outcome.REJECT if i % 2 else Decision.Outcome.OTHER_SKU
        decided_request(appraiser=appraiser, truth=skus[i % len(skus)], shown=shown,
                        outcome=outcome, scores=[0.8, 0.7 - 0.01 * i, 0.5], seed=i,
                        model_version=f"model-{i % 3}|detector|grabcut")


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx partial", "full page"])
def test_qa_queue_queries_do_not_grow_with_cases(
        appraiser, qa_user, skus, htmx, monkeypatch) -> None:  # noqa: F811
    import webapp.review.views as review_views

    monkeypatch.setattr(review_views, "QUEUE_ROWS_CACHE_S", 0)  # count the rows' own queries
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    client = logged_in(qa_user)
    url = reverse("review:queue")
    _bad_cases(appraiser, skus, 2)
    client.get(url, **headers)
    few_count, few_body = _queries(client, url, **headers)
    assert few_body.count('class="case-row') == 2
    _bad_cases(appraiser, skus, 8)
    client.get(url, **headers)  # new cases clear the cached filter options: read them again
    many_count, many_body = _queries(client, url, **headers)
    assert many_body.count('class="case-row') == 10
    assert many_body.count('title="model-2|detector|grabcut"') == 2  # each row's model
    assert many_count == few_count, "a query per bad case is back"
    assert many_count <= QA_QUEUE_QUERIES


def test_drawn_coordinates_are_formatted_as_floatformat_would() -> None:
    """The evidence view formats its hundreds of coordinates itself; digit for digit what
    ``|floatformat:1`` gave the page before (half up on the repr, no "-0.0")."""
    import random

    from django.template.defaultfilters import floatformat

    from webapp.matching.templatetags.matching_extras import _tenths

    rng = random.Random(14)
    values = [0.0, -0.0, 5, 12.25, 12.35, 0.05, -0.05, -0.04, 1e-9, 199.95, 2.675, 1234567.85,
              *(rng.uniform(-50, 900) for _ in range(5000)),
              *(round(rng.uniform(0, 400), 2) for _ in range(5000)),  # many exact halves
              *(rng.randint(0, 400) * 200 / rng.randint(1, 400) for _ in range(2000))]
    for value in values:
        assert _tenths(value) == floatformat(value, 1), value
