from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from webapp.audit.models import AuditEntry


def audit_entries(
    *,
    actor_id: int | None = None,
    sku_ids: Iterable[int] | None = None,
    action_prefix: str = "",
) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.select_related("actor", "sku", "content_type")
    if actor_id is not None:
        entries = entries.filter(actor_id=actor_id)
    if sku_ids is not None:
        entries = entries.filter(sku_id__in=list(sku_ids))
    if action_prefix:
        entries = entries.filter(action__startswith=action_prefix)
    return entries.order_by("-created_at", "-id")


def audit_actions() -> list[str]:
    return list(AuditEntry.objects.values_list("action", flat=True).distinct().order_by("action"))
