from __future__ import annotations

from django.http import HttpRequest

from webapp.accounts.roles import Role, user_roles


def roles(request: HttpRequest) -> dict[str, object]:
    held = user_roles(request.user)
    return {
        "is_appraiser": Role.APPRAISER in held,
        "is_qa": Role.QA in held,
        "is_catalogue_admin": Role.CATALOGUE_ADMIN in held,
    }
