"""The OpenAPI schema and Swagger UI: for logged-in users unless SKULENS_API_DOCS_PUBLIC."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class DocsPermission(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return settings.API_DOCS_PUBLIC or IsAuthenticated().has_permission(request, view)


class SchemaView(SpectacularAPIView):
    permission_classes = [DocsPermission]

    def handle_exception(self, exc: Exception) -> Response:
        # Errors in the API's JSON shape, not in the schema's media type.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)


class DocsView(SpectacularSwaggerSplitView):
    """A page for people: without a login, the login page, not an error. The split view
    serves its start-up script as a file: the Content Security Policy forbids inline scripts."""

    permission_classes = [AllowAny]  # checked in get(), to redirect instead of refusing

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        if not DocsPermission().has_permission(request, self):
            return redirect_to_login(request.get_full_path())
        return super().get(request, *args, **kwargs)
