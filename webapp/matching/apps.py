from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "webapp.matching"
    label = "matching"

    def ready(self) -> None:
        from webapp.matching import tasks  # noqa: F401 - registers what the sweeper sends by name
