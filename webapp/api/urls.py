from django.urls import path, re_path

from webapp.api import catalog, catalog_admin, tokens
from webapp.api.docs import DocsView, SchemaView
from webapp.api.fallback import not_found
from webapp.api.matches import (
    MatchCreateApi,
    MatchDecisionApi,
    MatchDecisionUndoApi,
    MatchDetailApi,
    MatchHistoryApi,
)

app_name = "api"
urlpatterns = [
    path("v1/matches", MatchCreateApi.as_view(), name="match-create"),
    path("v1/matches/<int:match_id>", MatchDetailApi.as_view(), name="match-detail"),
    path("v1/matches/<int:match_id>/decision", MatchDecisionApi.as_view(), name="match-decision"),
    path("v1/matches/<int:match_id>/decision/undo", MatchDecisionUndoApi.as_view(),
         name="match-decision-undo"),
    path("v1/matches/history", MatchHistoryApi.as_view(), name="match-history"),
    # The catalogue: reads for every role, writes for catalogue admins.
    path("v1/categories", catalog.CategoryListApi.as_view(), name="category-list"),
    path("v1/brands", catalog.BrandListApi.as_view(), name="brand-list"),
    path("v1/series", catalog.SeriesListApi.as_view(), name="series-list"),
    path("v1/skus", catalog.SkuListApi.as_view(), name="sku-list"),
    path("v1/skus/create", catalog_admin.SkuCreateApi.as_view(), name="sku-create"),
    path("v1/skus/<int:sku_id>", catalog.SkuDetailApi.as_view(), name="sku-detail"),
    path("v1/skus/<int:sku_id>/update", catalog_admin.SkuUpdateApi.as_view(), name="sku-update"),
    path("v1/skus/<int:sku_id>/merge", catalog_admin.SkuMergeApi.as_view(), name="sku-merge"),
    path("v1/skus/<int:sku_id>/history", catalog_admin.SkuHistoryApi.as_view(),
         name="sku-history"),
    path("v1/skus/<int:sku_id>/images", catalog_admin.SkuImageAddApi.as_view(),
         name="sku-image-add"),
    path("v1/skus/<int:sku_id>/images/<int:image_id>", catalog_admin.SkuImageDeleteApi.as_view(),
         name="sku-image-delete"),
    path("v1/index", catalog_admin.IndexStatusApi.as_view(), name="index-status"),
    # Tokens for the mobile app: obtain with a password, list and revoke your own.
    path("v1/auth/token", tokens.TokenObtainApi.as_view(), name="token-obtain"),
    path("v1/auth/tokens", tokens.TokenListApi.as_view(), name="token-list"),
    path("v1/auth/tokens/<str:token_key>", tokens.TokenRevokeApi.as_view(), name="token-revoke"),
    path("v1/schema", SchemaView.as_view(), name="schema"),
    path("v1/docs", DocsView.as_view(url_name="api:schema"), name="docs"),
    # Last: unknown paths (and ids a converter refuses, e.g. -1) get a JSON 404, not HTML.
    re_path(r"", not_found),
]
