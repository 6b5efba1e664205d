from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "webapp.catalog"
    label = "catalog"

    def ready(self) -> None:
        from webapp.catalog import (
            receivers,  # noqa: F401 - connects the search documents' receivers
            tasks,  # noqa: F401 - registers what services send by name
        )
