"""Uploaded and catalogue files, served only to the users allowed to see them.

Appraisal photos (originals, normalised images, masks) follow the ownership rule of
`webapp.matching.selectors`; reference images are visible to every role, the catalogue's
and the gallery copies of imported history photos (`history/<import>/gallery/`); import
bundles to catalogue admins. Anything else under MEDIA_ROOT is not served at all.

Django streams the file itself in the embedded default. Behind a web server, the view only
decides and answers with an X-Accel-Redirect (nginx) or X-Sendfile (Apache, lighttpd) header,
and the server sends the bytes (SKULENS_MEDIA_SERVER).
"""

from __future__ import annotations

import mimetypes
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_safe

from webapp.accounts.roles import Role, has_role, user_roles
from webapp.catalog.models import CatalogueImport, SKUImage
from webapp.matching.selectors import query_photo_file_visible

MEDIA_SERVERS = ("django", "x-accel-redirect", "x-sendfile")


def _clean(path: str) -> str:
    """The media-relative name, or 404 for anything that could leave MEDIA_ROOT."""
    name = posixpath.normpath(path.replace("\\", "/")).lstrip("/")
    if not path or name in (".", "") or name.startswith("..") or "\x00" in name:
        raise Http404("No such file")
    return name


def _media_user(request: HttpRequest) -> Any:
    """The session's user, or the owner of the API token the request carries."""
    if request.user.is_authenticated:
        return request.user
    from rest_framework.exceptions import APIException
    from rest_framework.request import Request

    from webapp.api.auth import AuditedTokenAuthentication

    try:
        found = AuditedTokenAuthentication().authenticate(Request(request))
    except APIException:
        return None
    return found[0] if found else None


def _may_read(request: HttpRequest, name: str) -> bool:
    user = _media_user(request)
    if user is None:
        return False
    if not user_roles(user):
        return False
    if name.startswith("uploads/"):
        return query_photo_file_visible(user=user, name=name)
    if name.startswith(("catalog/", "history/")):
        # Only reference images: a history photo that joined no gallery is not served.
        return SKUImage.objects.filter(image=name).exists()
    if name.startswith("imports/"):
        return has_role(user, Role.CATALOGUE_ADMIN) and CatalogueImport.objects.filter(
            bundle=name
        ).exists()
    return False


@require_safe
def media(request: HttpRequest, path: str) -> HttpResponseBase:
    name = _clean(path)
    # Not allowed and not there look the same: no one learns which names exist.
    if not _may_read(request, name):
        raise Http404("No such file")
    full = Path(settings.MEDIA_ROOT) / name
    if not full.is_file():
        raise Http404("No such file")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    mode = settings.MEDIA_SERVER
    if mode == "django":
        response: HttpResponseBase = FileResponse(full.open("rb"), content_type=content_type)
    else:
        response = HttpResponse(content_type=content_type)
        if mode == "x-accel-redirect":
            response["X-Accel-Redirect"] = settings.MEDIA_ACCEL_PREFIX.rstrip("/") + "/" + quote(
                name
            )
        else:
            response["X-Sendfile"] = str(full)
    response["Cache-Control"] = "private, max-age=3600"
    return response
