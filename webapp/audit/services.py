"""Audit writes. Any app records a change with one call to `audit_record`."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import models

from webapp.accounts.roles import Actor
from webapp.audit.models import AuditEntry


def _sku_of(obj: models.Model | None) -> models.Model | None:
    """The SKU an object belongs to: itself, or its `sku` foreign key (images, decisions)."""
    # By label, as AuditEntry.sku names it: catalog records audits, audit imports no catalog.
    sku_model = apps.get_model("catalog", "SKU")
    if obj is None:
        return None
    if isinstance(obj, sku_model):
        return obj
    sku = getattr(obj, "sku", None)
    return sku if isinstance(sku, sku_model) else None


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: models.Model | None = None,
    changes: dict[str, Any] | None = None,
    sku: models.Model | None = None,  # a catalog SKU (audit imports no catalog)
) -> AuditEntry:
    """Record that `actor` did `action` to `obj`.

    Call it inside the caller's transaction, so the entry exists exactly when the change does.
    `sku` defaults to `obj` itself or `obj.sku`; `actor` None (or anonymous) means the system,
    e.g. a management command or a scheduled task. `changes` must be JSON-serialisable;
    by convention `{"field": [old, new]}`.
    """
    user = actor if actor is not None and actor.is_authenticated else None
    owner = sku if sku is not None else _sku_of(obj)
    return AuditEntry.objects.create(
        actor=user,
        actor_name=user.get_username() if user is not None else "",
        action=action,
        content_type=ContentType.objects.get_for_model(obj) if obj is not None else None,
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        sku_id=owner.pk if owner is not None else None,
        changes=changes or {},
    )


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """`{"field": [old, new]}` for the fields whose value differs."""
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }
