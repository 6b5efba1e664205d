"""What learning does when the catalogue changes (webapp.catalog.signals); connected by
LearningConfig.ready."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from webapp.catalog.models import SKU
from webapp.catalog.signals import catalogue_changed
from webapp.learning.tasks import sync_index

logger = logging.getLogger(__name__)


@receiver(catalogue_changed, dispatch_uid="learning_index_sync_on_catalogue_change")
def _catalogue_changed(sender: type[SKU], **kwargs: Any) -> None:
    """The index follows the catalogue incrementally (the hourly beat sync is the safety net)."""
    _enqueue_index_sync()


def _enqueue_index_sync() -> None:
    try:
        sync_index.delay()
    except Exception:  # noqa: BLE001 - the change is committed; the hourly sync catches up
        logger.exception("could not enqueue learning.sync_index; the hourly sync will catch up")
