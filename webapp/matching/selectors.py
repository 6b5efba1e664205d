"""Match reads. The ownership rule lives here and nowhere else: every page, API view, re-box,
retry, crop or mask view and the media view asks these functions which requests a user may see
or act on, so that a non-owner gets the same 404 as for an id that does not exist."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from webapp.accounts.roles import Role, has_role
from webapp.matching.models import MatchRequest, QueryPhoto

User = AbstractBaseUser | AnonymousUser

# Roles that oversee every appraiser's work (read only: acting stays with the owner).
OVERSEER_ROLES = (Role.QA, Role.CATALOGUE_ADMIN)


def match_requests_visible_to(user: User) -> QuerySet[MatchRequest]:
    """An appraiser sees their own requests; QA and catalogue admins see all of them."""
    if not user.is_authenticated or not user.is_active:
        return MatchRequest.objects.none()
    if has_role(user, *OVERSEER_ROLES):
        return MatchRequest.objects.all()
    return MatchRequest.objects.filter(created_by=user)


def match_requests_actionable_by(user: User) -> QuerySet[MatchRequest]:
    """Deciding, retrying and re-boxing are the owner's (a superuser may act on any)."""
    if not user.is_authenticated or not user.is_active:
        return MatchRequest.objects.none()
    if user.is_superuser:
        return MatchRequest.objects.all()
    return MatchRequest.objects.filter(created_by=user)


def match_request_for(*, user: User, request_id: int, act: bool = False) -> MatchRequest:
    """The request if `user` may see it (or act on it, with `act`).

    Raises MatchRequest.DoesNotExist otherwise: callers answer 404, never 403, so that ids of
    other people's requests cannot be told from ids that do not exist."""
    allowed = match_requests_actionable_by(user) if act else match_requests_visible_to(user)
    return allowed.get(pk=request_id)


def query_photo_for(*, user: User, request_id: int, position: int, act: bool = False) -> QueryPhoto:
    """One photo of a request `user` may see (or act on). Raises QueryPhoto.DoesNotExist."""
    allowed = match_requests_actionable_by(user) if act else match_requests_visible_to(user)
    return QueryPhoto.objects.select_related("request").get(
        request__in=allowed, request_id=request_id, position=position
    )


def query_photo_file_visible(*, user: User, name: str) -> bool:
    """Whether the media file `name` is the original, normalised image or mask of a photo of a
    request `user` may see."""
    from django.db.models import Q

    return QueryPhoto.objects.filter(
        Q(original=name) | Q(image=name) | Q(mask=name),
        request__in=match_requests_visible_to(user),
    ).exists()


def recent_requests(*, user: AbstractBaseUser, limit: int = 20) -> QuerySet[MatchRequest]:
    return (
        MatchRequest.objects.filter(created_by=user)
        .exclude(source=MatchRequest.Source.HISTORY)  # imported history is not their work
        .select_related("decision__sku")
        .prefetch_related("photos")[:limit]
    )


def request_with_candidates(*, request_id: int, user: User) -> MatchRequest:
    """One request with everything its page shows, if `user` may see it."""
    return (
        match_requests_visible_to(user)
        .select_related("category", "brand", "series", "decision__sku")
        .prefetch_related(
            "photos",
            "candidates__sku__series__brand__category",
            "candidates__reference_image",
            "candidates__query_photo",
        )
        .get(pk=request_id)
    )
