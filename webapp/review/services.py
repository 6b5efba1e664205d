from __future__ import annotations

from webapp.matching.models import Decision
from webapp.review.models import BadCase


def bad_case_open_for(*, decision: Decision) -> BadCase:
    """Open (idempotently) the bad case for a rejected, corrected or doubtful decision."""
    scores = list(decision.request.candidates.order_by("rank").values_list("score", flat=True)[:2])
    margin = scores[0] - scores[1] if len(scores) == 2 else None
    bad_case, _ = BadCase.objects.get_or_create(
        request=decision.request,
        defaults={"decision": decision, "margin": margin, "correct_sku": decision.sku},
    )
    return bad_case
