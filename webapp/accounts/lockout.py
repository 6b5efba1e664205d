"""django-axes hooks: the client's address, and the answer to a locked-out login."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse


def client_ip(request: HttpRequest) -> str:
    """The socket's address; behind SKULENS_PROXY_COUNT proxies, the address the outermost
    of them saw (X-Forwarded-For is only trusted that far: a client could forge the rest)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    if settings.PROXY_COUNT <= 0:
        return remote
    chain = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    chain = [part for part in chain if part]
    if len(chain) < settings.PROXY_COUNT:
        return remote
    return chain[-settings.PROXY_COUNT]


def _minutes() -> int:
    return max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_message() -> str:
    return (f"Too many failed logins: try again in {_minutes()} minutes, "
            "or ask a catalogue admin to unlock the account.")


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            {"error": {"code": "locked_out", "message": lockout_message()}}, status=429
        )
    else:
        response = TemplateResponse(request, "registration/locked_out.html",
                                    {"message": lockout_message()}, status=429).render()
    response["Retry-After"] = retry_after
    return response
