"""A SKU's reference images: upload several, reorder, remove."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_POST

from webapp.accounts.roles import Role, role_required
from webapp.catalog.models import SKU, SKUImage
from webapp.catalog.selectors import sku_images
from webapp.catalog.services import sku_image_move, sku_image_remove, sku_images_add
from webapp.catalog.validation import ReferenceImageError, images_check
from webapp.catalog.views.common import UploadError, changed, uploaded_files


def _panel(request: HttpRequest, sku: SKU, errors: list[str] | None = None) -> HttpResponse:
    if not request.htmx:  # type: ignore[attr-defined]
        for error in errors or []:
            messages.error(request, error)
        return redirect("catalog:sku_detail", sku.pk)
    response = TemplateResponse(
        request, "catalog/_images.html",
        {"sku": sku, "images": sku_images(sku=sku), "errors": errors or []},
        status=422 if errors else 200,
    )
    return response if errors else changed(response)


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def upload(request: HttpRequest, sku_id: int) -> HttpResponse:
    sku = get_object_or_404(SKU, pk=sku_id)
    try:
        files = uploaded_files(request, "images")
        if not files:
            raise UploadError("Choose one or more images.")
        sku_images_add(sku=sku, actor=request.user, images=images_check(files))
    except UploadError as exc:
        return _panel(request, sku, [str(exc)])
    except ReferenceImageError as exc:
        return _panel(request, sku, exc.messages)
    return _panel(request, sku)


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def move(request: HttpRequest, sku_id: int, image_id: int) -> HttpResponse:
    image = get_object_or_404(SKUImage, pk=image_id, sku_id=sku_id)
    offset = -1 if request.POST.get("direction") == "up" else 1
    sku_image_move(image=image, actor=request.user, offset=offset)
    return _panel(request, image.sku)


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def remove(request: HttpRequest, sku_id: int, image_id: int) -> HttpResponse:
    image = get_object_or_404(SKUImage, pk=image_id, sku_id=sku_id)
    sku = image.sku
    sku_image_remove(image=image, actor=request.user)
    return _panel(request, sku)
