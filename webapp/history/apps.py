from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "webapp.history"
    label = "history"
    verbose_name = "Labelled history import"
