"""Anything under /api/ that no endpoint matches answers in the API's JSON error shape."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


# Exempt: it changes nothing, and a POST or DELETE must get this JSON 404, not a CSRF 403.
@csrf_exempt
def not_found(request: HttpRequest) -> JsonResponse:
    body = {"error": {"code": "not_found", "message": f"No API endpoint at {request.path}."}}
    return JsonResponse(body, status=404)
