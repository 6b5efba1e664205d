from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "webapp.history"
    label = "history"
    verbose_name = "Labelled history import"

    def ready(self) -> None:
        from webapp.history import tasks  # noqa: F401 - registers what the sweeper sends by name
