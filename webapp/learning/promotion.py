"""Promotion and rollback: one row per swap, executed by a task on the gpu queue.

The swap itself is `index_publish(model_ref=..., full_rebuild=True)`: it re-embeds the
catalogue with the new model, writes a new index version directory, and then activates the
index and the model together in one transaction. Until that commit every match runs on the old
pair; after it, on the new pair (the gateway reloads when the active row changes). Old version
directories stay on disk (`retention` prunes them), and rollback is a promotion of an earlier
model without the gate that re-activates its kept index version instead of re-embedding.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.audit.services import audit_record
from webapp.enqueue import enqueue_on_commit
from webapp.learning.gate import model_version_gate
from webapp.learning.models import ModelVersion, Promotion
from webapp.learning.registry import model_version_register_live
from webapp.learning.selectors import live_model_ref, promotion_in_flight
from webapp.learning.services import index_publish

logger = logging.getLogger(__name__)


class PromotionError(ValueError):
    pass


def _enqueue(promotion_id: int) -> None:
    # By name: tasks import this module, not the other way (a lost message: the sweeper resends)
    enqueue_on_commit("learning.promote_model", promotion_id)


def promotion_kind(model: ModelVersion) -> str:
    """An earlier live model comes back by rollback; a new one needs the gate's pass."""
    return Promotion.Kind.ROLLBACK if model.promoted_at else Promotion.Kind.PROMOTE


def promotion_request(
    *, model: ModelVersion, user: User | None = None, automatic: bool = False
) -> Promotion:
    """Queue making `model` live. Raises PromotionError when it may not, or cannot, be."""
    previous = live_model_ref()
    if model.model_ref == previous:
        raise PromotionError(f"{model.name} is already live.")
    kind = promotion_kind(model)
    if kind == Promotion.Kind.PROMOTE and model.gate != ModelVersion.Gate.PASSED:
        raise PromotionError(f"{model.name} has not passed the gate.")
    if model.source == ModelVersion.Source.TRAINED and not Path(model.model_ref).is_file():
        raise PromotionError(f"The checkpoint {model.model_ref} is missing.")
    if promotion_in_flight() is not None:
        raise PromotionError("Another promotion or rollback is under way.")
    model_version_register_live()  # so the model being replaced can be rolled back to
    try:
        with transaction.atomic():
            promotion = Promotion.objects.create(
                kind=kind, model=model, automatic=automatic, requested_by=user,
                previous_model_ref=previous,
            )
            _enqueue(promotion.pk)
    except IntegrityError as exc:  # the one-in-flight constraint: a concurrent request won
        raise PromotionError("Another promotion or rollback is under way.") from exc
    return promotion


def _claim(promotion_id: int) -> bool:
    # A redelivered task (its worker died) may take over a RUNNING row: publishing is safe to
    # repeat, it only writes another version directory.
    return Promotion.claim(promotion_id, takeover=True)


def promotion_execute(*, promotion_id: int) -> bool:
    """Swap the model and index. Returns False when there was nothing (left) to do."""
    if not _claim(promotion_id):
        return False
    promotion = Promotion.objects.select_related("model", "requested_by").get(pk=promotion_id)
    model = promotion.model
    if promotion.kind == Promotion.Kind.PROMOTE and (
        model.gate_report.get("live_model_ref") != live_model_ref()
    ):
        # The live model changed since the gate ran: the verdict is stale, judge again.
        model = model_version_gate(model=model)
        if model.gate != ModelVersion.Gate.PASSED:
            promotion_fail(promotion_id=promotion_id,
                           error="Refused by the gate against the current live model.")
            return True
    # A rollback re-activates the model's kept index (only catalogue changes since are
    # embedded); a new model re-embeds the catalogue.
    version = index_publish(full_rebuild=True, model_ref=model.model_ref,
                            reuse_kept=promotion.kind == Promotion.Kind.ROLLBACK)
    with transaction.atomic():
        now = timezone.now()
        Promotion.objects.filter(pk=promotion_id).update(
            status=Promotion.Status.DONE, index_version=version, finished_at=now, error=""
        )
        ModelVersion.objects.filter(pk=model.pk).update(promoted_at=now)
        audit_record(
            actor=promotion.requested_by, action=f"model.{promotion.kind}", obj=model,
            changes={"model": [promotion.previous_model_ref, model.model_ref],
                     "index": [None, version.name]},
        )
    logger.info("%s: %s is live with index %s", promotion.kind, model.name, version.name)
    return True


def promotion_fail(*, promotion_id: int, error: str) -> None:
    Promotion.fail(promotion_id, error=error)
