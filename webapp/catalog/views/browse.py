"""Browse and search the hierarchy; rename or delete its empty levels."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from webapp.accounts.roles import Role, role_required
from webapp.catalog.forms import NameForm
from webapp.catalog.models import Brand, Category, Series
from webapp.catalog.selectors import SKU_STATUSES, hierarchy_tree, sku_browse
from webapp.catalog.services import CatalogueError, hierarchy_delete, hierarchy_rename
from webapp.catalog.views.common import go
from webapp.params import choice_param, int_param, search_text

PAGE_SIZE = 50
LEVELS: dict[str, type[Category] | type[Brand] | type[Series]] = {
    "category": Category, "brand": Brand, "series": Series,
}


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def home(request: HttpRequest) -> TemplateResponse:
    """The SKU list, filtered by the tree on the left and the search box."""
    params = request.GET
    status = choice_param(params, "status", SKU_STATUSES, "active", strict=False)
    filters = {
        "category_id": int_param(params, "category", strict=False),
        "brand_id": int_param(params, "brand", strict=False),
        "series_id": int_param(params, "series", strict=False),
    }
    query = search_text(params.get("q"))
    page = Paginator(sku_browse(query=query, status=status, **filters), PAGE_SIZE).get_page(
        int_param(params, "page", default=1, strict=False)
    )
    # Links keep every filter but the page number.
    keep = params.copy()
    keep.pop("page", None)
    context: dict[str, object] = {
        "page": page, "query": query, "status": status, "statuses": SKU_STATUSES,
        "filters": filters, "keep": keep.urlencode(),
    }
    if request.htmx:  # type: ignore[attr-defined]
        return TemplateResponse(request, "catalog/_sku_table.html", context)
    context["tree"] = hierarchy_tree()
    return TemplateResponse(request, "catalog/home.html", context)


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def hierarchy(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, "catalog/hierarchy.html", {"tree": hierarchy_tree()})


def _node(level: str, pk: int) -> Category | Brand | Series:
    if level not in LEVELS:
        raise Http404("No such level")
    node = get_object_or_404(LEVELS[level], pk=pk)
    assert isinstance(node, Category | Brand | Series)  # what LEVELS holds
    return node


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def hierarchy_rename_view(request: HttpRequest, level: str, pk: int) -> HttpResponse:
    node = _node(level, pk)
    form = NameForm(request.POST)
    try:
        if not form.is_valid():
            raise CatalogueError("A name is required.")
        hierarchy_rename(node=node, name=form.cleaned_data["name"], actor=request.user)
        messages.success(request, f"Renamed to {node.name}.")
    except CatalogueError as exc:
        messages.error(request, str(exc))
    return go(request, reverse("catalog:hierarchy"))


@role_required(Role.CATALOGUE_ADMIN)
@require_POST
def hierarchy_delete_view(request: HttpRequest, level: str, pk: int) -> HttpResponse:
    node = _node(level, pk)
    try:
        hierarchy_delete(node=node, actor=request.user)
        messages.success(request, f"Deleted {level} {node.name}.")
    except CatalogueError as exc:
        messages.error(request, str(exc))
    return go(request, reverse("catalog:hierarchy"))


@role_required(Role.CATALOGUE_ADMIN)
@require_GET
def index_status_panel(request: HttpRequest) -> TemplateResponse:
    """The nav's index pill, polled (the template tag reads learning's status)."""
    return TemplateResponse(request, "catalog/_index_status.html")
