"""Audit history pages (mounted under /catalog/audit/)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from webapp.accounts.roles import Role, role_required
from webapp.audit.selectors import audit_actions, audit_entries
from webapp.params import int_param, text_param

PAGE_SIZE = 50


def _render(request: HttpRequest, *, user: object = None) -> TemplateResponse:
    action = text_param(request.GET, "action", max_chars=60)
    entries = audit_entries(actor_id=getattr(user, "pk", None), action_prefix=action)
    page_number = int_param(request.GET, "page", default=1, strict=False)
    page = Paginator(entries, PAGE_SIZE).get_page(page_number)
    keep = request.GET.copy()
    keep.pop("page", None)
    return TemplateResponse(
        request,
        "catalog/audit.html",
        {"page": page, "subject": user, "action": action, "actions": audit_actions(),
         "keep": keep.urlencode()},
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def audit_list(request: HttpRequest) -> TemplateResponse:
    return _render(request)


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def audit_for_user(request: HttpRequest, user_id: int) -> TemplateResponse:
    return _render(request, user=get_object_or_404(get_user_model(), pk=user_id))
