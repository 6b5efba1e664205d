"""Create, edit, deactivate, reactivate and merge SKUs."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.accounts.roles import Role, role_required
from webapp.audit.selectors import audit_entries
from webapp.catalog.forms import MergeForm, SkuForm
from webapp.catalog.models import SKU
from webapp.catalog.selectors import hierarchy_names, sku_detail, sku_images
from webapp.catalog.services import (
    CatalogueError,
    sku_create,
    sku_merge,
    sku_set_active,
    sku_update,
)
from webapp.catalog.validation import ReferenceImageError, images_check
from webapp.catalog.views.common import UploadError, changed, go, uploaded_files

HISTORY_LIMIT = 50


def _load(sku_id: int) -> SKU:
    try:
        return sku_detail(sku_id=sku_id)
    except SKU.DoesNotExist as exc:
        raise Http404("No such SKU") from exc


def _history(sku: SKU) -> object:
    # A merged SKU's history stays its own, and shows on the SKU it went into too.
    ids = [sku.pk, *sku.merged_from.values_list("pk", flat=True)]
    return audit_entries(sku_ids=ids)[:HISTORY_LIMIT]


@role_required(Role.CATALOGUE_ADMIN)
@require_http_methods(["GET", "POST"])
def create(request: HttpRequest) -> HttpResponse:
    form = SkuForm(request.POST or None)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            images = images_check(uploaded_files(request, "images"))
            sku = sku_create(actor=request.user, images=images, **form.cleaned_data)
        except (CatalogueError, UploadError) as exc:
            errors = [str(exc)]
        except ReferenceImageError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"Created {sku.code}; the index is being updated.")
            return go(request, reverse("catalog:sku_detail", args=[sku.pk]))
    status = 422 if request.method == "POST" else 200
    return TemplateResponse(
        request, "catalog/sku_new.html",
        {"form": form, "errors": errors, "names": hierarchy_names()},
        status=status,
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def detail(request: HttpRequest, sku_id: int) -> TemplateResponse:
    sku = _load(sku_id)
    return TemplateResponse(
        request,
        "catalog/sku_detail.html",
        {
            "sku": sku,
            "images": sku_images(sku=sku),
            "history": _history(sku),
            "merge_form": MergeForm(),
        },
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_http_methods(["GET", "POST"])
def edit(request: HttpRequest, sku_id: int) -> HttpResponse:
    """GET: the edit form (htmx swaps it into the info panel). POST: save."""
    sku = _load(sku_id)
    if request.method == "GET":
        if request.GET.get("cancel"):
            return TemplateResponse(request, "catalog/_sku_info.html", {"sku": sku})
        return TemplateResponse(
            request, "catalog/_sku_form.html",
            {"form": SkuForm.for_sku(sku), "sku": sku, "names": hierarchy_names()},
        )
    form = SkuForm.for_sku(sku, request.POST)
    errors: list[str] = []
    if form.is_valid():
        try:
            sku = sku_update(sku=sku, actor=request.user, **form.cleaned_data)
        except CatalogueError as exc:
            errors = [str(exc)]
        else:
            if not request.htmx:  # type: ignore[attr-defined]
                return go(request, reverse("catalog:sku_detail", args=[sku.pk]))
            return changed(TemplateResponse(request, "catalog/_sku_info.html",
                                            {"sku": _load(sku.pk)}))
    return TemplateResponse(
        request, "catalog/_sku_form.html",
        {"form": form, "sku": sku, "errors": errors, "names": hierarchy_names()}, status=422,
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def set_active(request: HttpRequest, sku_id: int) -> HttpResponse:
    sku = _load(sku_id)
    active = request.POST.get("active") == "true"
    try:
        sku_set_active(sku=sku, actor=request.user, active=active)
        messages.success(
            request,
            f"{sku.code} is {'active again' if active else 'deactivated'}; "
            "the index is being updated.",
        )
    except CatalogueError as exc:
        messages.error(request, str(exc))
    return go(request, reverse("catalog:sku_detail", args=[sku.pk]))


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def merge(request: HttpRequest, sku_id: int) -> HttpResponse:
    source = _load(sku_id)
    form = MergeForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(map(str, form.errors.get("target", ["Choose a SKU."]))))
        return go(request, reverse("catalog:sku_detail", args=[source.pk]))
    target = form.cleaned_data["target"]
    try:
        moved = sku_merge(source=source, target=target, actor=request.user)
    except CatalogueError as exc:
        messages.error(request, str(exc))
        return go(request, reverse("catalog:sku_detail", args=[source.pk]))
    messages.success(
        request,
        f"Merged {source.code} into {target.code}: {moved.images} images, "
        f"{moved.candidates} candidates, {moved.decisions} decisions and "
        f"{moved.bad_cases} bad cases moved.",
    )
    return go(request, reverse("catalog:sku_detail", args=[target.pk]))


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def history(request: HttpRequest, sku_id: int) -> TemplateResponse:
    sku = _load(sku_id)
    return TemplateResponse(request, "catalog/_history.html",
                            {"sku": sku, "history": _history(sku)})
