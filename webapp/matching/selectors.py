from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from webapp.matching.models import MatchRequest


def recent_requests(*, user: AbstractBaseUser, limit: int = 20) -> QuerySet[MatchRequest]:
    return (
        MatchRequest.objects.filter(created_by=user)
        .exclude(source=MatchRequest.Source.HISTORY)  # imported history is not their work
        .select_related("decision__sku")
        .prefetch_related("photos")[:limit]
    )


def request_with_candidates(*, request_id: int) -> MatchRequest:
    return (
        MatchRequest.objects.select_related("category", "brand", "series", "decision__sku")
        .prefetch_related(
            "photos",
            "candidates__sku__series__brand__category",
            "candidates__reference_image",
            "candidates__query_photo",
        )
        .get(pk=request_id)
    )
