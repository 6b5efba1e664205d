"""The appraiser's decisions on a finished match: record one, and undo one's own in time."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from webapp.audit.services import audit_record
from webapp.catalog.models import SKU
from webapp.matching.calibration import confident_threshold
from webapp.matching.gallery import gallery_enrich_from_decision, gallery_withdraw_decision
from webapp.matching.models import Decision, MatchRequest
from webapp.review.models import BadCase, CatalogueGap, FailureCause
from webapp.review.services import bad_case_flag_gap, bad_case_open_for


class DecisionError(ValueError):
    """Refused by the match's state (not finished, already decided)."""


class DecisionInvalid(DecisionError):
    """Well-formed but unusable content: a candidate or SKU that does not fit this match."""


def decision_record(
    *,
    request: MatchRequest,
    user: User,
    outcome: str,
    candidate_id: int | None = None,
    sku_id: int | None = None,
    note: str = "",
) -> Decision:
    """Record the appraiser's verdict. Rejections and corrections become bad cases; "new
    SKU" resolves its bad case as a catalogue gap at once, for the catalogue admins."""
    if request.status != MatchRequest.Status.DONE:
        raise DecisionError("This match has not finished yet.")
    if Decision.objects.filter(request=request).exists():
        raise DecisionError("A decision has already been recorded for this match.")
    candidate = None
    sku = None
    if outcome == Decision.Outcome.ACCEPT:
        if candidate_id is not None:
            candidate = request.candidates.filter(pk=candidate_id).select_related("sku").first()
        if candidate is None:
            raise DecisionInvalid("Pick one of this match's candidates.")
        sku = candidate.sku
    elif outcome == Decision.Outcome.OTHER_SKU:
        if sku_id is not None:
            sku = SKU.objects.filter(pk=sku_id, is_active=True).first()
        if sku is None:
            raise DecisionInvalid("Choose an existing, active SKU.")
    elif outcome not in (Decision.Outcome.REJECT, Decision.Outcome.NEW_SKU):
        raise DecisionInvalid(f"Unknown outcome {outcome!r}.")
    with transaction.atomic():
        decision = Decision.objects.create(
            request=request,
            outcome=outcome,
            sku=sku,
            candidate=candidate,
            decided_by=user,
            note=note,
            model_version=request.model_version,
            index_version=request.index_version,
        )
        audit_record(
            actor=user,
            action="decision.record",
            obj=decision,
            changes={"outcome": [None, outcome], "sku": [None, sku.code if sku else None]},
        )
        below_threshold = candidate is not None and candidate.score < confident_threshold(
            candidate.sku.category
        )
        if outcome != Decision.Outcome.ACCEPT or below_threshold:
            bad_case = bad_case_open_for(decision=decision)
            if outcome == Decision.Outcome.NEW_SKU:
                # What QA's "catalogue gap" does, by the one who saw the item.
                bad_case_flag_gap(bad_case=bad_case, actor=user,
                                  note=note.strip() or request.query_text)
        gallery_enrich_from_decision(decision=decision)
    return decision


def decision_undo_deadline(decision: Decision) -> datetime | None:
    """Until when the decider may undo this decision; None when undo is switched off."""
    if settings.UNDO_WINDOW_S <= 0:
        return None
    return decision.decided_at + timedelta(seconds=settings.UNDO_WINDOW_S)


def decision_undoable_by(decision: Decision | None, user: User) -> bool:
    if decision is None:
        return False
    return undo_open(decided_at=decision.decided_at, decided_by_id=decision.decided_by_id,
                     user=user)


def undo_open(*, decided_at: datetime | None, decided_by_id: int | None, user: User) -> bool:
    """Whether `user` may still undo a decision made at `decided_at` by `decided_by_id`."""
    if decided_at is None or decided_by_id != user.pk or settings.UNDO_WINDOW_S <= 0:
        return False
    return timezone.now() <= decided_at + timedelta(seconds=settings.UNDO_WINDOW_S)


def _bad_case_as_left(bad_case: BadCase, decision: Decision) -> bool:
    """True while nobody has acted on the bad case since the decision opened it."""
    if decision.outcome == Decision.Outcome.NEW_SKU:
        gap = CatalogueGap.objects.select_for_update().filter(bad_case=bad_case).first()
        return (bad_case.status == BadCase.Status.RESOLVED
                and bad_case.resolved_by_id == decision.decided_by_id
                and bad_case.causes == [FailureCause.CATALOGUE_GAP]
                and gap is not None and gap.status == CatalogueGap.Status.OPEN)
    return (bad_case.status == BadCase.Status.OPEN and not bad_case.causes
            and not bad_case.note and bad_case.correct_sku_id == decision.sku_id)


def decision_undo(*, decision: Decision, user: User) -> MatchRequest:
    """Withdraw one's own decision within SKULENS_UNDO_WINDOW_S: the match is undecided again.

    Withdrawn with it: its bad case and catalogue gap (only while nobody else has acted on
    them) and the reference images it added to the gallery (the next index sync drops their
    vectors). The audit trail keeps the decision's entry and records the undo beside it: it is
    the history of what happened, and an undo is part of it.
    """
    with transaction.atomic():
        # No select_related: PostgreSQL cannot lock the nullable side of an outer join.
        locked = Decision.objects.select_for_update().filter(pk=decision.pk).first()
        if locked is None:
            raise DecisionError("This decision has already been undone.")
        if locked.decided_by_id != user.pk:
            raise DecisionError("Only the appraiser who made a decision can undo it.")
        if not decision_undoable_by(locked, user):
            window = settings.UNDO_WINDOW_S
            raise DecisionError(
                "Undo is switched off." if window <= 0 else
                f"A decision can be undone for {_duration(window)} after it was made; "
                "this one is older."
            )
        bad_case = BadCase.objects.select_for_update().filter(decision=locked).first()
        if bad_case is not None and not _bad_case_as_left(bad_case, locked):
            raise DecisionError("QA or the catalogue admins have already acted on this item's "
                                "bad case, so the decision stays; ask QA to change it.")
        images = gallery_withdraw_decision(decision=locked, actor=user)
        audit_record(
            actor=user,
            action="decision.undo",
            obj=locked,
            changes={
                "outcome": [locked.outcome, None],
                "sku": [locked.sku.code if locked.sku else None, None],
                "bad_case": [bad_case.pk if bad_case else None, None],
                "gallery_images": [images, []],
            },
        )
        request_id = locked.request_id
        locked.delete()  # its bad case and catalogue gap go with it (CASCADE)
    return MatchRequest.objects.get(pk=request_id)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    return f"{seconds / 60:g} minutes"
