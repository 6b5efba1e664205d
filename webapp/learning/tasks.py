from __future__ import annotations

from celery import shared_task

from webapp.learning.services import index_publish


@shared_task(name="learning.sync_index", acks_late=True, ignore_result=True)
def sync_index() -> int:
    """Incremental: re-running it with nothing changed publishes an identical index."""
    return index_publish().vector_count
