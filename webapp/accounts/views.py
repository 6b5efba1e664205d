from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse

from webapp.accounts.roles import ROLE_HOME_URL_NAMES, Role, user_roles


def home(request: HttpRequest) -> HttpResponse:
    """Send each user to the home page of their first role."""
    held = user_roles(request.user)
    for role in (Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN):
        if role in held:
            return HttpResponseRedirect(reverse(ROLE_HOME_URL_NAMES[role]))
    raise PermissionDenied("Your account has no role yet. Ask a catalogue admin.")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
