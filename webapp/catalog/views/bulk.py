"""Bulk import (dry run, then apply) and export."""

from __future__ import annotations

import tempfile

from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.accounts.roles import Role, role_required
from webapp.catalog.bulk import (
    ImportPlan,
    catalogue_import_commit,
    catalogue_import_start,
)
from webapp.catalog.bundles import zip_from_uploads
from webapp.catalog.export import catalogue_export
from webapp.catalog.importing import CatalogueFormatError
from webapp.catalog.models import CatalogueImport
from webapp.catalog.views.common import UploadError, go, uploaded_files
from webapp.params import choice_param

RECENT_IMPORTS = 10


def _page(request: HttpRequest, errors: list[str], status: int = 200) -> TemplateResponse:
    return TemplateResponse(
        request,
        "catalog/import.html",
        {
            "errors": errors,
            "recent": CatalogueImport.objects.select_related("created_by")[:RECENT_IMPORTS],
        },
        status=status,
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_http_methods(["GET", "POST"])
def start(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: a zip, or a CSV plus images -> a dry run, nothing written."""
    if request.method == "GET":
        return _page(request, [])
    try:
        zips = uploaded_files(request, "bundle")
        csvs = uploaded_files(request, "csv")
        if zips:
            name, data = zips[0]
        elif csvs:
            name = csvs[0][0]
            data = zip_from_uploads(csv_data=csvs[0][1], images=uploaded_files(request, "images"))
        else:
            raise UploadError("Choose a zip, or a CSV file and its images.")
        record = catalogue_import_start(actor=request.user, zip_data=data, original_name=name)
    except (UploadError, CatalogueFormatError) as exc:
        return _page(request, [str(exc)], status=422)
    return go(request, reverse("catalog:import_detail", args=[record.pk]))


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def detail(request: HttpRequest, import_id: int) -> TemplateResponse:
    record = get_object_or_404(CatalogueImport.objects.select_related("created_by"), pk=import_id)
    return TemplateResponse(
        request,
        "catalog/import_detail.html",
        {"record": record, "plan": ImportPlan.from_json(record.report)},
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def commit(request: HttpRequest, import_id: int) -> HttpResponse:
    record = get_object_or_404(CatalogueImport, pk=import_id)
    was_planned = record.status == CatalogueImport.Status.PLANNED
    try:
        record = catalogue_import_commit(record=record, actor=request.user)
    except CatalogueFormatError as exc:
        messages.error(request, str(exc))
    else:
        if record.status == CatalogueImport.Status.APPLIED and was_planned:
            counts = record.report.get("counts", {})
            messages.success(
                request,
                f"Imported: {counts.get('create', 0)} created, {counts.get('update', 0)} "
                f"changed, {record.report.get('images_added', 0)} images added. "
                "The index is being updated.",
            )
        elif record.status == CatalogueImport.Status.REFUSED:
            messages.error(request, "Nothing was imported: some rows are rejected (see below).")
    return go(request, reverse("catalog:import_detail", args=[record.pk]))


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def export(request: HttpRequest) -> FileResponse:
    """The whole catalogue as a zip in the import format (inactive SKUs included)."""
    active_only = choice_param(request.GET, "active_only", ["true", "false"], "false",
                               strict=False)
    include_inactive = active_only != "true"
    # On disk, not in memory: a catalogue's images can be large.
    handle = tempfile.TemporaryFile()
    catalogue_export(out=handle, include_inactive=include_inactive)
    handle.seek(0)
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    return FileResponse(handle, as_attachment=True, filename=f"catalogue-{stamp}.zip",
                        content_type="application/zip")
