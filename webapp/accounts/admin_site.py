"""The Django admin is for catalogue admins (and superusers) only."""

from __future__ import annotations

from django.contrib.admin import AdminSite
from django.http import HttpRequest

from webapp.accounts.roles import Role, has_role


def restrict_admin_to_catalogue_admins(site: AdminSite) -> None:
    def has_permission(request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and has_role(user, Role.CATALOGUE_ADMIN))

    site.has_permission = has_permission  # type: ignore[method-assign]
