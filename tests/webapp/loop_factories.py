"""Decided match requests without running the matcher: rows for the QA and learning tests.

The photo is a real demo rendering of the SKU, so models can be evaluated on it; the
candidates are whatever the test says was shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.contrib.auth.models import User
from django.core.files.base import ContentFile

from tests.webapp.conftest import jpeg_bytes
from webapp.catalog.demo import demo_skus, render_photo
from webapp.catalog.models import SKU
from webapp.matching.decisions import decision_record
from webapp.matching.models import Candidate, Decision, MatchRequest, QueryPhoto


def decided_request(
    *,
    appraiser: User,
    truth: SKU,
    shown: Sequence[SKU],
    outcome: str,
    scores: Sequence[float] | None = None,
    seed: int = 1,
    model_version: str = "test-model|full-frame|none",
) -> MatchRequest:
    """A finished request whose photo shows `truth`, with `shown` as ranked candidates, and
    the appraiser's decision (accept `truth` if shown, other_sku `truth`, or reject)."""
    spec = next(s for s in demo_skus() if s.code == truth.code)
    data = jpeg_bytes(render_photo(spec, seed), quality=90)
    request = MatchRequest.objects.create(
        created_by=appraiser, status=MatchRequest.Status.DONE, model_version=model_version,
        index_version="idx-test", timings_ms={"embed": 12.0},
    )
    MatchRequest.objects.filter(pk=request.pk).update(
        finished_at=request.created_at + timedelta(milliseconds=180 + 40 * seed % 300)
    )
    photo = QueryPhoto(request=request, position=0, original_format="jpeg", width=384,
                       height=384, box=[20.0, 20.0, 364.0, 364.0],
                       box_source=QueryPhoto.BoxSource.DETECTOR)
    photo.original.save(f"t{request.pk}.jpg", ContentFile(data), save=False)
    photo.image.save(f"t{request.pk}.jpg", ContentFile(data), save=False)
    photo.save()
    scores = list(scores or [0.9 - 0.05 * i for i in range(len(shown))])
    for rank, (sku, score) in enumerate(zip(shown, scores, strict=True), start=1):
        Candidate.objects.create(request=request, rank=rank, sku=sku, score=score,
                                 cosine=2 * score - 1, query_photo=photo,
                                 reference_image=sku.images.first())
    chosen = request.candidates.filter(sku=truth).first()
    if outcome == Decision.Outcome.ACCEPT:
        decision_record(request=request, user=appraiser, outcome=outcome, candidate_id=chosen.pk)
    elif outcome == Decision.Outcome.OTHER_SKU:
        decision_record(request=request, user=appraiser, outcome=outcome, sku_id=truth.pk)
    else:
        decision_record(request=request, user=appraiser, outcome=outcome)
    return request
