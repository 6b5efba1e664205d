"""The three roles. A role is a Django group; a superuser holds every role."""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django_htmx.middleware import HtmxDetails

# Whoever `request.user` is: someone logged in, or not yet.
AnyUser = User | AnonymousUser
# Who did something; None (or anonymous) is the system: a command or a scheduled task.
Actor = AnyUser | None


class AuthenticatedRequest(HttpRequest):
    """The request a view behind `role_required` receives (for type checking only): the
    decorator lets only an active user holding a role through, and HtmxMiddleware has set
    `htmx` on every request."""

    user: User
    htmx: HtmxDetails


class Role(enum.StrEnum):
    APPRAISER = "appraiser"
    QA = "qa"
    CATALOGUE_ADMIN = "catalogue_admin"


ROLE_HOME_URL_NAMES: dict[Role, str] = {
    Role.APPRAISER: "matching:home",
    Role.QA: "review:queue",
    Role.CATALOGUE_ADMIN: "catalog:home",
}


def user_roles(user: AnyUser) -> set[Role]:
    if not user.is_authenticated or not user.is_active:
        return set()
    if user.is_superuser:
        return set(Role)
    cached = getattr(user, "_skulens_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = {role for role in Role if role.value in names}
        user._skulens_roles = cached  # type: ignore[attr-defined]  # a memo for this request
    return cached


def has_role(user: AnyUser, *roles: Role) -> bool:
    return bool(user_roles(user) & set(roles))


ViewFunction = Callable[..., HttpResponseBase]


def role_required(*roles: Role) -> Callable[[ViewFunction], ViewFunction]:
    """View decorator: 403 unless the logged-in user holds one of `roles`."""

    def decorator(view: ViewFunction) -> ViewFunction:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not has_role(request.user, *roles):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        wrapped.required_roles = roles  # type: ignore[attr-defined]
        return wrapped

    return decorator
