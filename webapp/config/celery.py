"""Celery application: configured lazily from Django settings (CELERY_* names)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings")

app = Celery("skulens")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_postrun.connect(weak=False, dispatch_uid="release_retained_memory")
def _release_retained_memory(**_kwargs: Any) -> None:
    """Between tasks, memory the allocator kept past the limit goes back (webapp.memory)."""
    from django.conf import settings

    from webapp.memory import release_retained_memory

    release_retained_memory(above_bytes=settings.RETAINED_MEMORY_MB * 2**20)
