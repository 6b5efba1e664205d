from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django_htmx.http import HttpResponseClientRedirect

# Sent with every successful change so the page's history and index panels refresh themselves.
CHANGED_EVENT = "catalogue-changed"


class UploadError(ValueError):
    pass


def uploaded_files(request: HttpRequest, field: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of the files in `field`; the body size is capped by UploadLimitMiddleware."""
    try:
        files: Iterable[UploadedFile] = request.FILES.getlist(field)
    except TooManyFilesSent as exc:
        raise UploadError("Too many files in one upload; send a zip instead.") from exc
    except RequestDataTooBig as exc:
        raise UploadError("The upload is too large.") from exc
    return [(f.name or f"file{i}", f.read()) for i, f in enumerate(files, start=1)]


def changed(response: HttpResponse) -> HttpResponse:
    response["HX-Trigger"] = CHANGED_EVENT
    return response


def go(request: HttpRequest, url: str) -> HttpResponse:
    """Redirect that htmx follows as a full page load."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)  # type: ignore[attr-defined]


def int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
