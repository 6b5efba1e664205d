from __future__ import annotations

from django.http import HttpRequest
from django.template.response import TemplateResponse

from webapp.accounts.roles import Role, role_required
from webapp.catalog.selectors import sku_list_with_counts, sku_search
from webapp.learning.selectors import active_index_version
from webapp.learning.services import index_is_consistent


@role_required(Role.CATALOGUE_ADMIN)
def home(request: HttpRequest) -> TemplateResponse:
    query = request.GET.get("q", "").strip()
    skus = sku_search(query=query, limit=500) if query else sku_list_with_counts()[:500]
    index = active_index_version()
    return TemplateResponse(
        request,
        "catalog/home.html",
        {
            "skus": skus,
            "query": query,
            "index": index,
            "index_consistent": index_is_consistent(index) if index else None,
        },
    )
