"""Refuse oversized request bodies before anything parses them to temporary files."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def upload_body_limit() -> int:
    return settings.MATCH_MAX_PHOTOS * settings.UPLOAD_MAX_BYTES + 1024 * 1024


class UploadLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = upload_body_limit()
        if length > limit:
            message = (
                f"The upload is {length / 1024 / 1024:.0f} MB; the limit is "
                f"{settings.MATCH_MAX_PHOTOS} photos of "
                f"{settings.UPLOAD_MAX_BYTES // 1024 // 1024} MB each."
            )
            if request.path.startswith("/api/"):
                body = {"error": {"code": "upload_too_large", "message": message}}
                return JsonResponse(body, status=413)
            response = HttpResponse(message, status=413, content_type="text/plain")
            if request.headers.get("HX-Request"):
                # htmx shows 4xx bodies in the page's error box (see base.html's htmx-config).
                response = HttpResponse(
                    f'<ul class="errors" role="alert"><li>{message}</li></ul>', status=413
                )
            return response
        return self.get_response(request)
