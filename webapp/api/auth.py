"""Token authentication for the API: knox tokens, with lockout of guessing and an audit trail.

A failed token counts as a failed login (django-axes) under one pseudo-username per client
address, so an address that keeps sending bad tokens is locked out of token authentication
(429) without locking anyone's password login. Each token's use is in the audit history, once
per TOKEN_AUDIT_INTERVAL_S.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.request import Request

from webapp.accounts.lockout import client_ip, lockout_message
from webapp.audit.services import audit_record

# Not a valid username (usernames have no spaces), so it never collides with a real account.
TOKEN_FAILURES = "<api token>"


class LockedOut(exceptions.Throttled):
    default_code = "locked_out"

    def __init__(self) -> None:
        super().__init__(wait=settings.AXES_COOLOFF_TIME.total_seconds(),
                         detail=lockout_message())


def token_audit(*, request: Request, user: Any, token_key: str, action: str) -> None:
    audit_record(actor=user, action=action, obj=user, changes={
        "token": token_key, "path": request.path[:200], "method": request.method,
        "ip": client_ip(request._request),
    })


class AuditedTokenAuthentication(TokenAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        credentials = {"username": TOKEN_FAILURES}
        django_request = request._request
        has_token = request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("token")
        if has_token and not AxesProxyHandler.is_allowed(django_request, credentials):
            raise LockedOut()
        try:
            result = super().authenticate(request)
        except exceptions.AuthenticationFailed:
            user_login_failed.send(sender=type(self), credentials=credentials,
                                   request=django_request)
            audit_record(actor=None, action="token.refused", changes={
                "path": request.path[:200], "ip": client_ip(django_request)})
            raise
        if result is not None:
            user, token = result
            key = f"skulens:token-used:{token.token_key}"
            if cache.add(key, 1, timeout=settings.TOKEN_AUDIT_INTERVAL_S):
                token_audit(request=request, user=user, token_key=token.token_key,
                            action="token.use")
        return result


class AuditedTokenScheme(OpenApiAuthenticationExtension):
    """Documents the scheme in the OpenAPI schema: `Authorization: Token <token>`."""

    target_class = AuditedTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Token <token>`, from POST /api/v1/auth/token"}
