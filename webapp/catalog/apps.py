from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "webapp.catalog"
    label = "catalog"

    def ready(self) -> None:
        from webapp.catalog import (
            signals,  # noqa: F401 - connects the search receivers
            tasks,  # noqa: F401 - registers what services send by name
        )
