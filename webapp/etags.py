"""Conditional GET for the pages people keep reloading or htmx polls: an ETag over what the
page shows, and a 304 with no rendering when the browser already holds that page."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.utils.cache import get_conditional_response, patch_cache_control, patch_vary_headers
from django.utils.http import quote_etag

from webapp.accounts.roles import user_roles


def page_etag(request: HttpRequest, *state: object) -> str | None:
    """A quoted ETag over `state` (what the page shows that can change) and what every page
    shows: the release (its templates), the viewer, their roles (the menu) and their CSRF
    secret (the forms carry it). None when the page must be rendered: messages wait for it."""
    if len(get_messages(request)):
        return None
    get_token(request)  # the page's forms would create it while rendering: create it first
    user = request.user
    viewer = (user.pk, user.get_username(), sorted(user_roles(user)),
              str(request.META.get("CSRF_COOKIE", "")), bool(getattr(request, "htmx", False)))
    digest = hashlib.blake2b(repr((settings.RELEASE, viewer, state)).encode(), digest_size=16)
    return quote_etag(digest.hexdigest())


def content_key(*state: object) -> str:
    """A key over `state` and the release, shared by every viewer: for fragments of a page
    that show no one's own data, cached while what they show is unchanged."""
    return hashlib.blake2b(repr((settings.RELEASE, state)).encode(), digest_size=16).hexdigest()


def not_modified(request: HttpRequest, etag: str | None) -> HttpResponse | None:
    """The 304 when the request's If-None-Match holds `etag`, else None."""
    if etag is None:
        return None
    response = get_conditional_response(request, etag=etag)
    return None if response is None else tagged(response, etag)


def tagged(response: HttpResponse, etag: str | None) -> HttpResponse:
    """Browsers keep the page for this user only and ask again every time (If-None-Match)."""
    if etag is not None:
        response["ETag"] = etag
        patch_cache_control(response, private=True, no_cache=True)
        patch_vary_headers(response, ["HX-Request", "Cookie"])
    return response
