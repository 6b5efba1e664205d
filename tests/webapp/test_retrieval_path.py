"""One retrieval path: serving, the gate, the live measurement and `python -m ml evaluate`
rank the same photos identically against the same gallery (issue 11, part 5)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from ml.evaluate import evaluate_csv
from ml.images import load_rgb
from webapp import ml_gateway
from webapp.catalog.demo import BAG_DETECTION_CLASSES, demo_skus, render_photo
from webapp.catalog.models import SKU, SKUImage
from webapp.learning import gate
from webapp.learning.dataset import labelled_requests
from webapp.learning.measure import consecutive_pairs
from webapp.matching.decisions import decision_record
from webapp.matching.models import Decision
from webapp.matching.requests import match_request_create
from webapp.matching.runner import match_request_run

from .conftest import jpeg_bytes, upload

pytestmark = pytest.mark.django_db


def _photos(codes: list[str]) -> list:
    by_code = {s.code: s for s in demo_skus()}
    return [render_photo(by_code[code], 40 + i) for i, code in enumerate(codes)]


# A shallow search depth makes the depth rule visible: fewer SKUs than top_k come back.
# The visual path: `python -m ml evaluate` re-ranks only with --rerank (it reads catalogue text
# from CSV columns, not the database); the re-ranked path is checked below.
@override_settings(GALLERY_ENRICHMENT="none", SEARCH_DEPTH=5, CONFIDENT_SCORE=0.0, RERANK=False)
def test_serving_gate_measure_and_ml_evaluate_rank_identically(
    catalogue, appraiser, tmp_path: Path
) -> None:
    codes = list(SKU.objects.order_by("code").values_list("code", flat=True))
    photos = _photos(codes[:3])
    # Serving: the match task (run eagerly), as an appraiser's upload goes.
    served = []
    for code, photo in zip(codes, photos, strict=False):
        request = match_request_create(
            user=appraiser, uploads=[upload(f"{code}.jpg", jpeg_bytes(photo, quality=95))]
        )
        assert match_request_run(request_id=request.pk)  # what the worker's task runs
        request.refresh_from_db()
        assert request.status == "done", request.error
        ranking = list(request.candidates.order_by("rank").values_list("sku_id", flat=True))
        served.append((request, ranking))
        top = request.candidates.get(rank=1)
        decision_record(request=request, user=appraiser, outcome=Decision.Outcome.ACCEPT,
                        candidate_id=top.pk)
    top_k = settings.MATCH_TOP_K

    # The gate: the same requests, as labelled data, ranked with the live model.
    known = {r.request_id: r for r in labelled_requests()}
    requests = [known[request.pk] for request, _ in served]
    model_ref = ml_gateway.default_model_ref()
    gallery = gate.gallery_images()
    vectors = gate._gallery_vectors(gallery, model_ref)
    by_gate = gate.request_outcomes(requests, gallery, vectors, model_ref, top_k=top_k)
    assert [[s.sku_id for s in o.ranking] for o in by_gate] == [r for _, r in served]

    # The live measurement (the simulation's val figures), from the stored photos.
    stored = []
    for request, _ in served:
        with request.photos.get().image.open("rb") as handle:
            stored.append(load_rgb(handle.read()))
    live = ml_gateway.rank_live([[p] for p in stored], variants={"all": None},
                                classes=BAG_DETECTION_CLASSES, top_k=top_k)
    assert [[s.sku_id for s in r] for r in live.rankings["all"]] == [r for _, r in served]

    # python -m ml evaluate: the reference images and the stored photos as CSVs, isolated
    # by the app's own isolator (the detector and GrabCut the index was built with).
    gallery_csv, queries_csv = tmp_path / "gallery.csv", tmp_path / "queries.csv"
    media = Path(settings.MEDIA_ROOT)
    with gallery_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for image in SKUImage.objects.order_by("pk"):
            writer.writerow([media / image.image.name, image.sku_id])
    with queries_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for request, _ in served:
            writer.writerow([media / request.photos.get().image.name, request.decision.sku_id])
    result = evaluate_csv(
        gallery_csv, queries_csv, model=model_ref, isolator=ml_gateway.isolator(),
        detection_classes=BAG_DETECTION_CLASSES, strategy=settings.FUSION_STRATEGY,
        search_depth=settings.SEARCH_DEPTH, device="cpu",
    )
    assert [[int(label) for label in r[:top_k]] for r in result.rankings] == [
        r for _, r in served
    ]


@override_settings(GALLERY_ENRICHMENT="none", CONFIDENT_SCORE=0.0, RERANK=True,
                   RERANK_OCR_MARGIN=1.0)
def test_serving_gate_and_measure_rerank_identically(catalogue, appraiser) -> None:
    """With re-ranking on, the gate and the live measurement see serving's re-ranked ranking
    (the evidence stage runs inside ml.retrieval.rank_with_evidence for all three)."""
    codes = list(SKU.objects.order_by("code").values_list("code", flat=True))
    photos = _photos(codes[:3])
    served = []
    for code, photo in zip(codes, photos, strict=False):
        request = match_request_create(
            user=appraiser, uploads=[upload(f"{code}.jpg", jpeg_bytes(photo, quality=95))]
        )
        assert match_request_run(request_id=request.pk)
        request.refresh_from_db()
        candidates = list(request.candidates.order_by("rank"))
        assert candidates[0].evidence, "re-ranking did not run"
        served.append((request, [c.sku_id for c in candidates]))
        decision_record(request=request, user=appraiser, outcome=Decision.Outcome.ACCEPT,
                        candidate_id=candidates[0].pk)
    top_k = settings.MATCH_TOP_K
    known = {r.request_id: r for r in labelled_requests()}
    requests = [known[request.pk] for request, _ in served]
    model_ref = ml_gateway.default_model_ref()
    gallery = gate.gallery_images()
    vectors = gate._gallery_vectors(gallery, model_ref)
    by_gate = gate.request_outcomes(requests, gallery, vectors, model_ref, top_k=top_k)
    assert [[s.sku_id for s in o.ranking] for o in by_gate] == [r for _, r in served]
    stored = []
    for request, _ in served:
        with request.photos.get().image.open("rb") as handle:
            stored.append(load_rgb(handle.read()))
    live = ml_gateway.rank_live([[p] for p in stored], variants={"all": None},
                                classes=BAG_DETECTION_CLASSES, top_k=top_k)
    assert [[s.sku_id for s in r] for r in live.rankings["all"]] == [r for _, r in served]


def test_consecutive_pairs_are_full_pairs_of_one_label() -> None:
    assert consecutive_pairs([1, 1, 1, 2, 3, 2, 1]) == [[0, 1], [2, 6], [3, 5]]
