"""Near-duplicate pairs: scan, then merge or mark distinct."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from webapp.accounts.roles import Role, role_required
from webapp.catalog.duplicates import (
    duplicate_mark_distinct,
    duplicate_merge,
    duplicate_scan_request,
    duplicate_threshold,
)
from webapp.catalog.forms import ScanForm
from webapp.catalog.models import SKU, DuplicatePair, DuplicateScan
from webapp.catalog.services import CatalogueError
from webapp.catalog.views.common import go
from webapp.params import choice_param

PAIRS_SHOWN = 200


def _pairs(status: str) -> QuerySet[DuplicatePair]:
    return DuplicatePair.objects.filter(status=status).select_related(
        "sku_a__series__brand", "sku_b__series__brand", "image_a", "image_b", "resolved_by"
    ).order_by("-image_cosine", "-sku_cosine")


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def listing(request: HttpRequest) -> TemplateResponse:
    show = choice_param(request.GET, "show", DuplicatePair.Status.values,
                        DuplicatePair.Status.OPEN, strict=False)
    return TemplateResponse(
        request,
        "catalog/duplicates.html",
        {
            "pairs": _pairs(show)[:PAIRS_SHOWN],
            "show": show,
            "statuses": DuplicatePair.Status.choices,
            "scan": DuplicateScan.objects.select_related("requested_by").first(),
            "threshold": duplicate_threshold(),
        },
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def scan(request: HttpRequest) -> HttpResponse:
    form = ScanForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The threshold must be a cosine between 0.5 and 0.9999.")
    else:
        try:
            duplicate_scan_request(actor=request.user, threshold=form.cleaned_data["threshold"])
        except CatalogueError as exc:
            messages.error(request, str(exc))
    return go(request, reverse("catalog:duplicates"))


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def scan_status(request: HttpRequest, scan_id: int) -> HttpResponse:
    """Polled by the page while the scan runs; a finished scan reloads the page once."""
    scan_row = get_object_or_404(DuplicateScan, pk=scan_id)
    if scan_row.is_finished and request.GET.get("was") == "running":
        return go(request, reverse("catalog:duplicates"))
    return TemplateResponse(request, "catalog/_scan_status.html", {"scan": scan_row})


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def distinct(request: HttpRequest, pair_id: int) -> HttpResponse:
    pair = get_object_or_404(DuplicatePair.objects.select_related("sku_a", "sku_b"), pk=pair_id)
    try:
        duplicate_mark_distinct(pair=pair, actor=request.user)
        messages.success(request, f"{pair.sku_a.code} and {pair.sku_b.code} are distinct.")
    except CatalogueError as exc:
        messages.error(request, str(exc))
    return go(request, reverse("catalog:duplicates"))


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def merge(request: HttpRequest, pair_id: int) -> HttpResponse:
    pair = get_object_or_404(DuplicatePair.objects.select_related("sku_a", "sku_b"), pk=pair_id)
    keep = SKU.objects.filter(pk=request.POST.get("keep") or 0).first()
    try:
        if keep is None:
            raise CatalogueError("Choose which SKU to keep.")
        moved = duplicate_merge(pair=pair, keep=keep, actor=request.user)
        other = pair.sku_b if keep.pk == pair.sku_a_id else pair.sku_a
        messages.success(request, f"Merged {other.code} into {keep.code} ({moved.images} images).")
    except CatalogueError as exc:
        messages.error(request, str(exc))
    return go(request, reverse("catalog:duplicates"))
