"""The match flow through its services and the task, with the real model and index."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from tests.webapp.conftest import demo_photo_upload, upload
from tests.webapp.factories import (
    CandidateFactory,
    DecisionFactory,
    MatchRequestFactory,
    SeriesFactory,
)
from webapp.catalog.models import SKU, Category, Series, SKUImage
from webapp.matching.decisions import DecisionError, decision_record
from webapp.matching.models import Decision, MatchRequest
from webapp.matching.requests import match_request_create, match_request_retry
from webapp.matching.runner import match_request_fail, match_request_run
from webapp.matching.tasks import run_match
from webapp.review.models import BadCase


def _create_and_run(appraiser, uploads, **filters) -> MatchRequest:
    request = match_request_create(user=appraiser, uploads=uploads, **filters)
    assert match_request_run(request_id=request.pk)
    request.refresh_from_db()
    return request


def test_catalogue_image_finds_its_own_sku_first(appraiser, catalogue, settings) -> None:
    # The visual score of a self-match; re-ranked, the score is the fused probability
    # (tests/webapp/test_rerank.py).
    settings.RERANK = False
    reference = SKUImage.objects.select_related("sku").first()
    with reference.image.open("rb") as handle:
        data = handle.read()
    request = _create_and_run(appraiser, [upload("ref.png", data, "image/png")])
    top = request.candidates.first()
    assert request.status == MatchRequest.Status.DONE
    assert top.sku_id == reference.sku_id
    assert top.score == pytest.approx(1.0, abs=1e-3)
    assert top.reference_image_id is not None
    assert request.model_version and request.index_version == catalogue.name
    assert set(request.timings_ms) >= {"load", "embed", "search", "fuse", "store"}


def test_candidates_are_one_per_sku_ranked_with_scores_in_unit_range(appraiser, catalogue) -> None:
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    candidates = list(request.candidates.all())
    assert len(candidates) == min(django_settings.MATCH_TOP_K, SKU.objects.count())
    assert len({c.sku_id for c in candidates}) == len(candidates)
    scores = [c.score for c in candidates]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert [c.rank for c in candidates] == list(range(1, len(candidates) + 1))


def test_multi_photo_query_uses_every_photo(appraiser, catalogue) -> None:
    uploads = [demo_photo_upload("DEMO-VEL-MER-01", seed) for seed in (1, 2, 3)]
    request = _create_and_run(appraiser, uploads)
    assert request.photos.count() == 3
    assert {c.query_photo.position for c in request.candidates.all()} <= {0, 1, 2}


def test_category_filter_is_honoured_exactly(appraiser, catalogue) -> None:
    totes = Category.objects.get(name="Totes")
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")], category=totes)
    assert request.relaxed_filters == []
    categories = {c.sku.series.brand.category_id for c in request.candidates.all()}
    assert categories == {totes.pk}


def test_filter_with_no_reference_images_is_relaxed_and_recorded(appraiser, catalogue) -> None:
    empty_series = SeriesFactory(brand=Series.objects.get(name="Lune").brand, name="Empty series")
    request = _create_and_run(
        appraiser,
        [demo_photo_upload("DEMO-MAI-LUN-01")],
        brand=empty_series.brand,
        series=empty_series,
    )
    assert request.relaxed_filters == ["series"]
    assert {c.sku.series.brand_id for c in request.candidates.all()} == {empty_series.brand_id}


def test_rerun_is_idempotent(appraiser, catalogue) -> None:
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    before = list(request.candidates.values_list("id", flat=True))
    assert match_request_run(request_id=request.pk) is False
    assert list(request.candidates.values_list("id", flat=True)) == before


def test_task_records_failure_and_retry_completes(appraiser, catalogue, monkeypatch) -> None:
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")])

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("GPU fell over")

    monkeypatch.setattr("webapp.ml_gateway.match_batch", broken)
    run_match.apply(args=[request.pk])
    request.refresh_from_db()
    assert request.status == MatchRequest.Status.FAILED
    assert "GPU fell over" in request.error

    monkeypatch.undo()
    match_request_retry(request=request)
    request.refresh_from_db()
    assert request.status == MatchRequest.Status.QUEUED
    run_match.apply(args=[request.pk])
    request.refresh_from_db()
    assert request.status == MatchRequest.Status.DONE
    assert request.candidates.exists()


def _ranking(request: MatchRequest) -> list[tuple[int, float]]:
    return list(request.candidates.order_by("rank").values_list("sku_id", "score"))


def test_queued_requests_run_together_with_the_same_results_as_alone(
    appraiser, catalogue, settings
) -> None:
    totes = Category.objects.get(name="Totes")
    specs = [
        ([demo_photo_upload("DEMO-MAI-LUN-01")], {}),
        ([demo_photo_upload("DEMO-VEL-MER-01", seed) for seed in (1, 2)], {}),
        ([demo_photo_upload("DEMO-MAI-LUN-03")], {"category": totes}),
    ]
    settings.MATCH_BATCH = 1
    alone = [_create_and_run(appraiser, uploads, **filters) for uploads, filters in specs]

    settings.MATCH_BATCH = 8
    together = [match_request_create(user=appraiser, uploads=uploads, **filters)
                for uploads, filters in specs]
    assert match_request_run(request_id=together[0].pk)
    for single, batched in zip(alone, together, strict=True):
        batched.refresh_from_db()
        assert batched.status == MatchRequest.Status.DONE
        assert (single.batch_size, batched.batch_size) == (1, 3)
        assert batched.attempts == 1
        assert [sku for sku, _ in _ranking(batched)] == [sku for sku, _ in _ranking(single)]
        assert [score for _, score in _ranking(batched)] == pytest.approx(
            [score for _, score in _ranking(single)], abs=1e-4)
        assert set(batched.timings_ms) >= {"load", "detect", "embed", "search", "fuse", "store"}
    assert {c.sku.series.brand.category_id for c in together[2].candidates.all()} == {totes.pk}

    # The batch mates' own tasks arrive later and find nothing to do.
    run_match.apply(args=[together[1].pk])
    together[1].refresh_from_db()
    assert together[1].attempts == 1


def test_batching_off_leaves_other_requests_queued(appraiser, catalogue, settings) -> None:
    settings.MATCH_BATCH = 1
    first = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")])
    second = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-02")])
    assert match_request_run(request_id=first.pk)
    second.refresh_from_db()
    assert second.status == MatchRequest.Status.QUEUED


def test_a_request_whose_photo_is_unreadable_fails_alone_in_a_batch(appraiser, catalogue) -> None:
    good = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")])
    broken = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-02")])
    later = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-03")])
    photo = broken.photos.get()
    with photo.image.open("wb") as handle:
        handle.write(b"the disk returned garbage")
    assert match_request_run(request_id=good.pk)
    for request, status in ((good, "done"), (broken, "failed"), (later, "done")):
        request.refresh_from_db()
        assert request.status == status
    assert "image" in broken.error.lower()
    assert later.batch_size == 2


def test_a_failing_batch_is_rerun_one_request_at_a_time(appraiser, catalogue, monkeypatch) -> None:
    from webapp import ml_gateway

    real = ml_gateway.match_batch
    sizes: list[int] = []

    def refuses_batches(queries, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(queries))
        if len(queries) > 1:
            raise RuntimeError("out of GPU memory")
        return real(queries, **kwargs)

    monkeypatch.setattr("webapp.ml_gateway.match_batch", refuses_batches)
    first = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")])
    second = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-VEL-MER-01")])
    assert match_request_run(request_id=first.pk)
    assert sizes == [2, 1, 1]
    for request in (first, second):
        request.refresh_from_db()
        assert (request.status, request.batch_size) == (MatchRequest.Status.DONE, 1)
        assert request.candidates.exists()


def test_fail_never_overwrites_a_finished_match(appraiser, catalogue) -> None:
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    match_request_fail(request_id=request.pk, error="late duplicate")
    request.refresh_from_db()
    assert request.status == MatchRequest.Status.DONE


def test_accept_attaches_the_sku_without_a_bad_case_when_confident(
    appraiser, catalogue, settings
) -> None:
    settings.CONFIDENT_SCORE = 0.0
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    top = request.candidates.first()
    decision = decision_record(
        request=request, user=appraiser, outcome=Decision.Outcome.ACCEPT, candidate_id=top.pk
    )
    assert decision.sku_id == top.sku_id
    assert decision.model_version == request.model_version
    assert decision.index_version == request.index_version
    assert not BadCase.objects.exists()
    with pytest.raises(DecisionError, match="already"):
        decision_record(request=request, user=appraiser, outcome=Decision.Outcome.REJECT)


def test_reject_opens_a_bad_case_with_the_margin(appraiser, catalogue) -> None:
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    decision_record(request=request, user=appraiser, outcome=Decision.Outcome.REJECT)
    case = BadCase.objects.get(request=request)
    first, second = request.candidates.all()[:2]
    assert case.margin == pytest.approx(first.score - second.score)
    assert case.status == BadCase.Status.OPEN


def test_other_sku_correction_opens_a_bad_case_with_the_sku(appraiser, catalogue) -> None:
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    sku = SKU.objects.get(code="DEMO-KIR-SUM-01")
    decision_record(
        request=request, user=appraiser, outcome=Decision.Outcome.OTHER_SKU, sku_id=sku.pk
    )
    assert BadCase.objects.get(request=request).correct_sku == sku


def test_decision_refused_before_the_match_finishes(appraiser, catalogue) -> None:
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")])
    with pytest.raises(DecisionError, match="not finished"):
        decision_record(request=request, user=appraiser, outcome=Decision.Outcome.REJECT)


def test_accept_needs_a_candidate_of_this_match(appraiser, catalogue) -> None:
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    with pytest.raises(DecisionError, match="candidates"):
        decision_record(
            request=request, user=appraiser, outcome=Decision.Outcome.ACCEPT, candidate_id=999999
        )


def test_thresholds_are_calibrated_per_category_from_decisions(appraiser, catalogue) -> None:
    from webapp.matching.calibration import confident_threshold, thresholds_recalibrate
    from webapp.matching.models import ScoreThreshold

    handbags = Category.objects.get(name="Handbags")
    sku = SKU.objects.filter(series__brand__category=handbags).first()
    photo_request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    photo = photo_request.photos.get()
    # 40 reviewed matches: top scores 0.60..0.99; right at 0.80 and above, wrong below.
    for i in range(40):
        score = 0.60 + i * 0.01
        request = MatchRequestFactory(created_by=appraiser)
        top = CandidateFactory(request=request, rank=1, sku=sku, score=score,
                               cosine=2 * score - 1, query_photo=photo)
        outcome = Decision.Outcome.ACCEPT if score >= 0.795 else Decision.Outcome.REJECT
        DecisionFactory(request=request, outcome=outcome, decided_by=appraiser,
                        sku=sku if outcome == Decision.Outcome.ACCEPT else None,
                        candidate=top if outcome == Decision.Outcome.ACCEPT else None)
    (fit,) = thresholds_recalibrate(target_precision=0.95, min_support=10)
    assert fit.category == handbags
    assert 0.75 <= fit.threshold <= 0.80 + 1e-9
    assert fit.precision >= 0.95
    assert confident_threshold(handbags) == fit.threshold
    totes = Category.objects.get(name="Totes")
    assert confident_threshold(totes) == django_settings.CONFIDENT_SCORE
    assert ScoreThreshold.objects.count() == 1


@pytest.mark.parametrize(
    "policy,outcome,expect_added",
    [
        ("corrections", "other_sku", 1),  # the gallery missed: learn from it
        ("corrections", "accept_confident", 0),  # nothing to learn
        ("all", "accept_confident", 1),
        ("none", "other_sku", 0),
    ],
)
def test_confirmed_photos_enrich_the_gallery_by_policy(
    appraiser, catalogue, settings, policy, outcome, expect_added
) -> None:
    settings.GALLERY_ENRICHMENT = policy
    settings.CONFIDENT_SCORE = 0.0
    request = _create_and_run(appraiser, [demo_photo_upload("DEMO-MAI-LUN-01")])
    if outcome == "other_sku":
        sku = SKU.objects.exclude(pk=request.candidates.first().sku_id).first()
        decision_record(request=request, user=appraiser, outcome=outcome, sku_id=sku.pk)
    else:
        top = request.candidates.first()
        sku = top.sku
        decision_record(request=request, user=appraiser, outcome="accept", candidate_id=top.pk)
    added = SKUImage.objects.filter(sku=sku, source=SKUImage.Source.APPRAISAL)
    assert added.count() == expect_added
    if expect_added:
        from webapp.learning.services import index_publish

        version = index_publish()
        assert version.added == 1  # the new reference reaches the index incrementally
