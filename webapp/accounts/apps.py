from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(**_: object) -> None:
    from webapp.accounts.services import roles_ensure

    roles_ensure()


class AccountsConfig(AppConfig):
    name = "webapp.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Runs after every app so that the permissions it grants exist already.
        post_migrate.connect(_ensure_roles, dispatch_uid="skulens_roles_ensure")
