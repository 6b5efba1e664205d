from __future__ import annotations

import re

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from webapp.matching.models import Decision, MatchRequest

# The history's search box: bounded like every search.
HISTORY_QUERY_MAX_CHARS = 100
HISTORY_QUERY_MAX_WORDS = 8
# The history's "show" filter: key -> (label, condition).
HISTORY_SHOWS: dict[str, tuple[str, Q]] = {
    "all": ("All items", Q()),
    "undecided": ("Waiting for my decision",
                  Q(status=MatchRequest.Status.DONE, decision__isnull=True)),
    "running": ("Still matching",
                Q(status__in=[MatchRequest.Status.QUEUED, MatchRequest.Status.RUNNING])),
    "failed": ("Failed", Q(status=MatchRequest.Status.FAILED)),
    **{outcome.value: (outcome.label, Q(decision__outcome=outcome.value))
       for outcome in Decision.Outcome},
}


def recent_requests(*, user: AbstractBaseUser, limit: int = 20) -> QuerySet[MatchRequest]:
    return (
        MatchRequest.objects.filter(created_by=user)
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


def request_history(*, user: AbstractBaseUser, query: str = "", show: str = "all"
                    ) -> QuerySet[MatchRequest]:
    """The user's own items, newest first, narrowed by `show` (a HISTORY_SHOWS key) and by the
    words of `query`: each must be in the item number, the decided SKU's code or name, the
    appraiser's description or the decision's note."""
    items = MatchRequest.objects.filter(created_by=user)
    items = items.filter(HISTORY_SHOWS.get(show, HISTORY_SHOWS["all"])[1])
    words = query[:HISTORY_QUERY_MAX_CHARS].split()[:HISTORY_QUERY_MAX_WORDS]
    for word in words:
        number = re.fullmatch(r"#?(\d{1,12})", word)
        match = (Q(decision__sku__code__icontains=word) | Q(decision__sku__name__icontains=word)
                 | Q(query_text__icontains=word) | Q(decision__note__icontains=word))
        if number:
            match |= Q(pk=int(number.group(1)))
        items = items.filter(match)
    return (items.select_related("decision__sku", "category")
            .prefetch_related("photos").order_by("-created_at", "-pk"))
