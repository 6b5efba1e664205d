from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "webapp.matching"
    label = "matching"

    def ready(self) -> None:
        from webapp.matching import (
            receivers,  # noqa: F401 - connects to the catalogue's signals
            tasks,  # noqa: F401 - registers what the sweeper sends by name
        )
