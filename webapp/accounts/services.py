from __future__ import annotations

from django.contrib.auth.models import Group, Permission, User
from django.db import transaction

from webapp.accounts.roles import Role

# Django-admin permissions of each role: catalogue admins curate the catalogue and can look at
# everything else; the other roles work in the app's own pages.
ADMIN_PERMISSIONS: dict[Role, tuple[tuple[str, str], ...]] = {
    Role.CATALOGUE_ADMIN: (
        ("catalog", "add"), ("catalog", "change"), ("catalog", "delete"), ("catalog", "view"),
        ("matching", "view"), ("review", "view"), ("learning", "view"),
    ),
}


@transaction.atomic
def roles_ensure() -> None:
    for role in Role:
        group, _ = Group.objects.get_or_create(name=role.value)
        wanted = ADMIN_PERMISSIONS.get(role, ())
        if wanted:
            permissions = [
                p
                for p in Permission.objects.select_related("content_type")
                if (p.content_type.app_label, p.codename.split("_", 1)[0]) in wanted
            ]
            group.permissions.set(permissions)


@transaction.atomic
def user_create_with_role(*, username: str, password: str, role: Role) -> User:
    roles_ensure()
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    # Catalogue admins also curate through the Django admin.
    user.is_staff = role is Role.CATALOGUE_ADMIN
    user.save()
    user.groups.set([Group.objects.get(name=role.value)])
    return user
