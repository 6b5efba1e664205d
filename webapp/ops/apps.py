from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Health, readiness and Prometheus metrics for every process (web and workers)."""

    name = "webapp.ops"
    label = "ops"

    def ready(self) -> None:
        from webapp.ops import metrics

        metrics.connect_signals()
