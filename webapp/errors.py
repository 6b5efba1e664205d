"""Errors Django raises before, or outside, a DRF view, in the API's JSON shape under /api/.

DRF formats what its views raise (webapp.api.errors). Some failures never reach a view: too
many files or fields, an oversized body, a bad CSRF token, a page that does not exist, a crash.
The root URLconf's handler400/403/404/500 and the CSRF failure view below answer those in
`{"error": {"code", "message"}}` under /api/ and with the HTML pages elsewhere. A BadParameter
(webapp.params) raised by any view becomes a 400 here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils.html import escape
from django.views import defaults

from webapp.params import BadParameter

logger = logging.getLogger(__name__)


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def api_error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _bad_request_kind(exception: Exception | None) -> tuple[int, str, str]:
    if isinstance(exception, TooManyFilesSent):
        return 400, "too_many_files", "Too many files in one request."
    if isinstance(exception, TooManyFieldsSent):
        return 400, "too_many_fields", "Too many fields in one request."
    if isinstance(exception, RequestDataTooBig):
        return 413, "request_too_large", "The request body is too large."
    if isinstance(exception, BadParameter):
        return 400, "invalid_parameter", str(exception)
    return 400, "bad_request", "The request could not be read."


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    status, code, message = _bad_request_kind(exception)
    if is_api(request):
        return api_error(status, code, message)
    if request.headers.get("HX-Request"):
        return HttpResponse(f'<ul class="errors" role="alert"><li>{escape(message)}</li></ul>',
                            status=status)
    response = TemplateResponse(request, "400.html", {"message": message}, status=status)
    return response.render()


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        message = str(exception) if exception and str(exception) else "Not allowed."
        return api_error(403, "permission_denied", message)
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        return api_error(404, "not_found", f"Nothing at {request.path}.")
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        return api_error(500, "server_error", "The server failed; nothing was saved. "
                                              "The error has been logged.")
    return defaults.server_error(request)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if is_api(request):
        return api_error(403, "csrf_failed", f"CSRF check failed: {reason}")
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason)


class BadParameterMiddleware:
    """A BadParameter from any view is the client's mistake: a 400, never a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, BadParameter):
            return bad_request(request, exception)
        if isinstance(exception, PermissionDenied) and is_api(request):
            return permission_denied(request, exception)
        return None
