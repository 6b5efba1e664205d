from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.api.catalog import SkuListApi
from webapp.api.matches import MatchCreateApi, MatchDecisionApi, MatchDetailApi

app_name = "api"
urlpatterns = [
    path("v1/matches", MatchCreateApi.as_view(), name="match-create"),
    path("v1/matches/<int:match_id>", MatchDetailApi.as_view(), name="match-detail"),
    path("v1/matches/<int:match_id>/decision", MatchDecisionApi.as_view(), name="match-decision"),
    path("v1/skus", SkuListApi.as_view(), name="sku-list"),
    path("v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("v1/docs", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
