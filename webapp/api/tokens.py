"""/api/v1/auth/tokens: the mobile app obtains, lists and revokes its own tokens."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from webapp.accounts.roles import user_roles
from webapp.api.auth import LockedOut, token_audit
from webapp.api.errors import ApiError
from webapp.api.schema import error_responses


class TokenOutput(serializers.Serializer):
    token_key = serializers.CharField(help_text="the token's public prefix; names it in lists")
    created = serializers.DateTimeField()
    expiry = serializers.DateTimeField(allow_null=True)
    current = serializers.BooleanField(help_text="the token this request was made with")


def _live_tokens(user: object) -> list[AuthToken]:
    now = timezone.now()
    return list(AuthToken.objects.filter(user=user).filter(
        Q(expiry__gt=now) | Q(expiry__isnull=True)).order_by("-created"))


def _row(token: AuthToken, request: Request) -> dict[str, object]:
    current = isinstance(request.auth, AuthToken) and request.auth.digest == token.digest
    return {"token_key": token.token_key, "created": token.created, "expiry": token.expiry,
            "current": current}


class TokenObtainApi(APIView):
    """Username and password in, a new token out (shown once: only its hash is stored)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    parser_classes = [JSONParser, FormParser]

    @extend_schema_serializer(component_name="TokenObtain")
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=256, trim_whitespace=False)

    @extend_schema_serializer(component_name="TokenIssued")
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="send as 'Authorization: Token <token>'")
        token_key = serializers.CharField()
        expiry = serializers.DateTimeField(allow_null=True)

    @extend_schema(request=InputSerializer,
                   responses={201: OutputSerializer, **error_responses(400, 401, 403, 429)},
                   operation_id="auth_token_create", auth=[])
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request._request, **serializer.validated_data)
        if getattr(request._request, "axes_locked_out", False):
            raise LockedOut()
        if user is None:
            raise ApiError("Wrong username or password.", code="authentication_failed",
                           http_status=401)
        if not user_roles(user):
            raise ApiError("Your account has no role yet. Ask a catalogue admin.",
                           code="permission_denied", http_status=403)
        limit = settings.REST_KNOX["TOKEN_LIMIT_PER_USER"]
        with transaction.atomic():
            if limit and len(_live_tokens(user)) >= limit:
                raise ApiError(f"At most {limit} tokens per user: revoke one first.",
                               code="token_limit", http_status=403)
            token, secret = AuthToken.objects.create(user=user)
            token_audit(request=request, user=user, token_key=token.token_key,
                        action="token.create")
        body = {"token": secret, "token_key": token.token_key, "expiry": token.expiry}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class TokenListApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: TokenOutput(many=True), **error_responses(401, 403, 429)},
                   operation_id="auth_tokens_list")
    def get(self, request: Request) -> Response:
        rows = [_row(token, request) for token in _live_tokens(request.user)]
        return Response(TokenOutput(rows, many=True).data)


class TokenRevokeApi(APIView):
    """Revoke one of your tokens by its key ("current": the one this request carries)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={204: None, **error_responses(401, 403, 404, 429)},
                   operation_id="auth_tokens_destroy")
    def delete(self, request: Request, token_key: str) -> Response:
        tokens = AuthToken.objects.filter(user=request.user)
        if token_key == "current":
            if not isinstance(request.auth, AuthToken):
                raise ApiError("This request carries no token.", code="not_found",
                               http_status=404)
            tokens = tokens.filter(digest=request.auth.digest)
        else:
            tokens = tokens.filter(token_key=token_key[:25])
        with transaction.atomic():
            keys = list(tokens.values_list("token_key", flat=True))
            if not keys:
                raise ApiError("No such token.", code="not_found", http_status=404)
            tokens.delete()
            for key in keys:
                token_audit(request=request, user=request.user, token_key=key,
                            action="token.revoke")
        return Response(status=status.HTTP_204_NO_CONTENT)
