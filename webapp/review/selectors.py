from __future__ import annotations

from django.db.models import QuerySet

from webapp.review.models import BadCase


def bad_case_queue(*, status: str = BadCase.Status.OPEN) -> QuerySet[BadCase]:
    """Low-margin cases first: the top two candidates were close."""
    return (
        BadCase.objects.filter(status=status)
        .select_related("request__created_by", "decision", "correct_sku")
        .prefetch_related("request__photos")
        .order_by("margin", "-created_at")
    )
