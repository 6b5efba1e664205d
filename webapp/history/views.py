"""The labelled history import page: upload, watch the dry run, then apply (catalogue admins)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.accounts.roles import Role, role_required
from webapp.catalog.bundles import zip_from_uploads
from webapp.catalog.importing import CatalogueFormatError
from webapp.catalog.views.common import UploadError, go, uploaded_files
from webapp.history.format import HISTORY_CSV_NAME
from webapp.history.models import HistoryImport
from webapp.history.planning import HistoryPlan
from webapp.history.selectors import FILTERS, plan_rows_shown, recent_imports
from webapp.history.services import (
    HistoryImportError,
    history_import_apply_request,
    history_import_start,
)


def _page(request: HttpRequest, errors: list[str], status: int = 200) -> TemplateResponse:
    return TemplateResponse(
        request, "history/import.html",
        {"errors": errors, "recent": recent_imports()}, status=status,
    )


@role_required(Role.CATALOGUE_ADMIN)
@require_http_methods(["GET", "POST"])
def start(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: a zip, or a CSV plus photos -> a queued dry run."""
    if request.method == "GET":
        return _page(request, [])
    try:
        zips = uploaded_files(request, "bundle")
        csvs = uploaded_files(request, "csv")
        if zips:
            name, data = zips[0]
        elif csvs:
            name = csvs[0][0]
            data = zip_from_uploads(csv_data=csvs[0][1], images=uploaded_files(request, "photos"),
                                    csv_name=HISTORY_CSV_NAME)
        else:
            raise UploadError("Choose a zip, or a CSV file and its photos.")
        record = history_import_start(actor=request.user, zip_data=data, original_name=name)
    except (UploadError, CatalogueFormatError) as exc:
        return _page(request, [str(exc)], status=422)
    return go(request, reverse("history:detail", args=[record.pk]))


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def detail(request: HttpRequest, import_id: int) -> TemplateResponse:
    record = get_object_or_404(
        HistoryImport.objects.select_related("created_by", "applied_by"), pk=import_id
    )
    show = request.GET.get("show", "all")
    show = show if show in FILTERS else "all"
    plan = HistoryPlan.from_json(record.report)
    rows, matching = plan_rows_shown(plan, show)
    return TemplateResponse(request, "history/detail.html", {
        "record": record, "plan": plan, "rows": rows, "matching": matching, "show": show,
        "filters": FILTERS,
    })


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def status(request: HttpRequest, import_id: int) -> HttpResponse:
    """Polled while the import or its isolation runs; a change of phase reloads the page."""
    record = get_object_or_404(HistoryImport, pk=import_id)
    if request.GET.get("was") not in (None, record.phase):
        return go(request, reverse("history:detail", args=[record.pk]))
    return TemplateResponse(request, "history/_status.html", {"record": record})


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def apply(request: HttpRequest, import_id: int) -> HttpResponse:
    record = get_object_or_404(HistoryImport, pk=import_id)
    try:
        history_import_apply_request(record=record, actor=request.user)
    except HistoryImportError as exc:
        messages.error(request, str(exc))
    return go(request, reverse("history:detail", args=[record.pk]))
