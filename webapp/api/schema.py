"""OpenAPI helpers: the documented JSON error shape of webapp.api.errors."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorOutput = inline_serializer(
    "Error",
    {"error": inline_serializer("ErrorBody", {
        "code": serializers.CharField(help_text="stable, machine-readable"),
        "message": serializers.CharField(help_text="for a person"),
    })},
)

_DESCRIPTIONS = {
    400: "Invalid input", 401: "Not authenticated", 403: "The role does not allow this",
    404: "Not found", 405: "Method not allowed", 409: "Refused by the current state",
    413: "Upload too large", 415: "Unsupported media type",
    422: "Well-formed but unusable (e.g. a candidate of another match)", 429: "Throttled",
    500: "Server error", 507: "Storage full",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """`{status: response}` for extend_schema(responses=...)."""
    return {code: OpenApiResponse(ErrorOutput, description=_DESCRIPTIONS[code]) for code in codes}
