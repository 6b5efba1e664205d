from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from webapp.accounts.roles import Role
from webapp.accounts.services import user_create_with_role

DEMO_USERS = {
    Role.APPRAISER: ("appraiser", "appraiser-demo"),
    Role.QA: ("qa", "qa-demo"),
    Role.CATALOGUE_ADMIN: ("admin", "admin-demo"),
}


class Command(BaseCommand):
    help = "Create one demo user per role (development only) and print the logins."

    def handle(self, *args: Any, **options: Any) -> None:
        for role, (username, password) in DEMO_USERS.items():
            user_create_with_role(username=username, password=password, role=role)
            self.stdout.write(f"  {role.value:<16} login: {username:<10} password: {password}")
