from __future__ import annotations

from django.contrib.auth.models import User
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from webapp.accounts.roles import Role, has_role


def role_permission(*roles: Role) -> type[BasePermission]:
    class HasRole(BasePermission):
        message = "Your role does not allow this endpoint."

        def has_permission(self, request: Request, view: APIView) -> bool:
            return has_role(request.user, *roles)

    HasRole.__name__ = "Has" + "Or".join(r.value.title().replace("_", "") for r in roles)
    return HasRole


def request_user(request: Request) -> User:
    """The caller of a view whose permission classes let only logged-in users in."""
    user = request.user
    if not user.is_authenticated:  # never, behind those classes: it narrows the type
        raise NotAuthenticated()
    return user


IsAppraiser = role_permission(Role.APPRAISER)
IsAnyRole = role_permission(Role.APPRAISER, Role.QA, Role.CATALOGUE_ADMIN)
