from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "webapp.review"
    label = "review"

    def ready(self) -> None:
        from webapp.review import receivers  # noqa: F401 - connects to the catalogue's signals
