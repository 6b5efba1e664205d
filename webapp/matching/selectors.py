"""Match reads. The ownership rule lives here and nowhere else: every page, API view, re-box,
retry, crop or mask view and the media view asks these functions which requests a user may see
or act on, so that a non-owner gets the same 404 as for an id that does not exist."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Max, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum

from webapp.accounts.roles import AnyUser, Role, has_role
from webapp.catalog.models import SKUImage
from webapp.matching.models import Candidate, Decision, MatchRequest, QueryPhoto

# Roles that oversee every appraiser's work (read only: acting stays with the owner).
OVERSEER_ROLES = (Role.QA, Role.CATALOGUE_ADMIN)

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


def match_requests_visible_to(user: AnyUser) -> QuerySet[MatchRequest]:
    """An appraiser sees their own requests; QA and catalogue admins see all of them."""
    if not user.is_authenticated or not user.is_active:
        return MatchRequest.objects.none()
    if has_role(user, *OVERSEER_ROLES):
        return MatchRequest.objects.all()
    return MatchRequest.objects.filter(created_by=user)


def match_requests_actionable_by(user: AnyUser) -> QuerySet[MatchRequest]:
    """Deciding, retrying and re-boxing are the owner's (a superuser may act on any)."""
    if not user.is_authenticated or not user.is_active:
        return MatchRequest.objects.none()
    if user.is_superuser:
        return MatchRequest.objects.all()
    return MatchRequest.objects.filter(created_by=user)


def match_request_for(*, user: AnyUser, request_id: int, act: bool = False) -> MatchRequest:
    """The request if `user` may see it (or act on it, with `act`).

    Raises MatchRequest.DoesNotExist otherwise: callers answer 404, never 403, so that ids of
    other people's requests cannot be told from ids that do not exist."""
    allowed = match_requests_actionable_by(user) if act else match_requests_visible_to(user)
    return allowed.get(pk=request_id)


def query_photo_for(*, user: AnyUser, request_id: int, position: int, act: bool = False
                    ) -> QueryPhoto:
    """One photo of a request `user` may see (or act on). Raises QueryPhoto.DoesNotExist."""
    allowed = match_requests_actionable_by(user) if act else match_requests_visible_to(user)
    return QueryPhoto.objects.select_related("request").get(
        request__in=allowed, request_id=request_id, position=position
    )


def query_photo_file_visible(*, user: AnyUser, name: str) -> bool:
    """Whether the media file `name` is the original, normalised image or mask of a photo of a
    request `user` may see."""
    return QueryPhoto.objects.filter(
        Q(original=name) | Q(image=name) | Q(mask=name),
        request__in=match_requests_visible_to(user),
    ).exists()


def recent_requests(*, user: User, limit: int = 20) -> QuerySet[MatchRequest]:
    return (
        MatchRequest.objects.filter(created_by=user)
        .exclude(source=MatchRequest.Source.HISTORY)  # imported history is not their work
        .select_related("decision__sku")
        .prefetch_related("photos")[:limit]
    )


def request_with_candidates(*, request_id: int, user: AnyUser) -> MatchRequest:
    """One request with everything its page shows, if `user` may see it: three queries for
    the request (with its filters and decision), its photos and its candidates (with SKU
    hierarchy and reference image), and at most one for the catalogue images that spatial
    verification matched, whatever the number of candidates.

    Each candidate's query photo is the request's own prefetched photo, and each candidate
    gets ``evidence_reference``: the catalogue image its evidence names, or None."""
    match = (
        match_requests_visible_to(user)
        .select_related("category", "brand", "series", "decision__sku",
                        "decision__bad_case__gap")
        .prefetch_related(
            "photos",
            Prefetch(
                "candidates",
                Candidate.objects.select_related("sku__series__brand__category", "reference_image")
                .defer("reference_image__embedding"),
            ),
        )
        .get(pk=request_id)
    )
    photos = {p.pk: p for p in match.photos.all()}
    candidates = list(match.candidates.all())
    for candidate in candidates:
        if candidate.query_photo_id in photos:
            candidate.query_photo = photos[candidate.query_photo_id]
    verified = {
        int(spatial["reference_id"]) for c in candidates
        if (spatial := (c.evidence or {}).get("spatial"))
        and spatial.get("reference_id") is not None
    }
    known = {c.reference_image_id: c.reference_image for c in candidates if c.reference_image}
    missing = verified - known.keys()
    if missing:
        # Pages draw references from their file name; the 1 KB vector stays behind.
        known.update(SKUImage.objects.defer("embedding").in_bulk(missing))
    for candidate in candidates:
        spatial = (candidate.evidence or {}).get("spatial") or {}
        reference_id = spatial.get("reference_id")
        candidate.evidence_reference = (
            known.get(int(reference_id)) if reference_id is not None else None)
    return match


def result_page_state(*, request_id: int, user: AnyUser) -> dict[str, Any] | None:
    """What the result page shows that can change, in one query, for its ETag: the match's
    progress, its decision, the bad case and gap that decision opened and the newest edit of
    a candidate's SKU (a box correction re-runs the match: a new finished_at). None when
    `user` may not see the request."""
    candidates = Candidate.objects.filter(request_id=OuterRef("pk")).values("request_id")
    newest_sku_edit = candidates.annotate(newest=Max("sku__updated_at")).values("newest")
    sku_ids = candidates.annotate(ids=Sum("sku_id")).values("ids")  # a merge re-points them
    row = (
        match_requests_visible_to(user).filter(pk=request_id)
        .annotate(newest_sku_edit=Subquery(newest_sku_edit), sku_ids=Subquery(sku_ids))
        .values(
            "status", "stage", "progress", "attempts", "started_at", "finished_at", "error",
            "decision__pk", "decision__outcome", "decision__sku_id", "decision__decided_at",
            "decision__decided_by_id", "decision__bad_case__status",
            "decision__bad_case__gap__status", "decision__bad_case__gap__note",
            "newest_sku_edit", "sku_ids",
        )
        .first()
    )
    return None if row is None else dict(row)


def request_history(*, user: User, query: str = "", show: str = "all"
                    ) -> QuerySet[MatchRequest]:
    """The user's own items, newest first, narrowed by `show` (a HISTORY_SHOWS key) and by the
    words of `query`: each must be in the item number, the decided SKU's code or name, the
    appraiser's description or the decision's note."""
    items = MatchRequest.objects.filter(created_by=user).exclude(
        source=MatchRequest.Source.HISTORY  # imported history is not their work
    )
    items = items.filter(HISTORY_SHOWS.get(show, HISTORY_SHOWS["all"])[1])
    # Callers check the text with webapp.params.search_text; the slices only bound the work.
    words = query[:settings.SEARCH_MAX_CHARS].split()[:settings.SEARCH_MAX_WORDS]
    for word in words:
        number = re.fullmatch(r"#?(\d{1,12})", word)
        match = (Q(decision__sku__code__icontains=word) | Q(decision__sku__name__icontains=word)
                 | Q(query_text__icontains=word) | Q(decision__note__icontains=word))
        if number:
            match |= Q(pk=int(number.group(1)))
        items = items.filter(match)
    return (items.select_related("decision__sku", "category")
            .prefetch_related("photos").order_by("-created_at", "-pk"))
