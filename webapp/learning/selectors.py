from __future__ import annotations

from webapp.learning.models import IndexVersion


def active_index_version() -> IndexVersion | None:
    return IndexVersion.objects.filter(is_active=True).first()
