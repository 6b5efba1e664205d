from django.apps import AppConfig


class MatchingConfig(AppConfig):
    name = "webapp.matching"
    label = "matching"
