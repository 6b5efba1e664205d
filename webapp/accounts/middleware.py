"""Login is required everywhere except the login page, static/media files and the token API."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

_PUBLIC_PREFIXES = ("/accounts/login/", "/static/", "/healthz", "/readyz", "/metrics")


def _has_token(request: HttpRequest) -> bool:
    return request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("token ")


class LoginRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        # The API authenticates with tokens itself and answers 401 in JSON.
        is_public = path.startswith(_PUBLIC_PREFIXES) or path.startswith("/api/")
        # The mobile app fetches photos with its API token; the media view authenticates it.
        is_public = is_public or (path.startswith("/media/") and _has_token(request))
        if not is_public and not request.user.is_authenticated:
            if request.htmx:  # type: ignore[attr-defined]
                response = HttpResponse(status=401)
                response["HX-Redirect"] = f"{settings.LOGIN_URL}?next={path}"
                return response
            return redirect_to_login(request.get_full_path())
        return self.get_response(request)
