"""Bad-case writes: open (from a decision), tag, resolve, flag a catalogue gap, bulk actions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from webapp.audit.services import audit_record
from webapp.catalog.models import SKU
from webapp.matching.models import Decision
from webapp.review.models import BadCase, CatalogueGap, FailureCause


class ReviewError(ValueError):
    pass


def _initial_category_id(decision: Decision) -> int | None:
    if decision.sku is not None:
        return decision.sku.series.brand.category_id
    if decision.request.category_id:
        return decision.request.category_id
    top = decision.request.candidates.order_by("rank").select_related("sku__series__brand").first()
    return top.sku.series.brand.category_id if top else None


def bad_case_open_for(*, decision: Decision) -> BadCase:
    """Open (idempotently) the bad case for a rejected, corrected or doubtful decision."""
    scores = list(decision.request.candidates.order_by("rank").values_list("score", flat=True)[:2])
    margin = scores[0] - scores[1] if len(scores) == 2 else None
    bad_case, _ = BadCase.objects.get_or_create(
        request=decision.request,
        defaults={
            "decision": decision,
            "margin": margin,
            "correct_sku": decision.sku,
            "category_id": _initial_category_id(decision),
        },
    )
    return bad_case


def clean_causes(causes: Iterable[str]) -> list[str]:
    """Known causes only, in taxonomy order, without repeats."""
    wanted = set(causes)
    unknown = wanted - set(FailureCause.values)
    if unknown:
        raise ReviewError(f"Unknown failure cause(s): {', '.join(sorted(unknown))}.")
    return [c for c in FailureCause.values if c in wanted]


def _locked_open(bad_case: BadCase) -> BadCase:
    locked = BadCase.objects.select_for_update().get(pk=bad_case.pk)
    if locked.status != BadCase.Status.OPEN:
        raise ReviewError(f"Bad case #{locked.pk} is already resolved.")
    return locked


@transaction.atomic
def bad_case_tag(*, bad_case: BadCase, causes: Iterable[str], actor: User) -> BadCase:
    """Add causes to an open case (bulk tagging keeps what was already tagged)."""
    locked = _locked_open(bad_case)
    before = list(locked.causes)
    locked.causes = clean_causes([*locked.causes, *causes])
    locked.save(update_fields=["causes"])
    if locked.causes != before:
        audit_record(actor=actor, action="bad_case.tag", obj=locked,
                     changes={"causes": [before, locked.causes]})
    return locked


@transaction.atomic
def bad_case_resolve(
    *,
    bad_case: BadCase,
    actor: User,
    causes: Sequence[str],
    correct_sku: SKU | None,
    note: str = "",
) -> BadCase:
    """Close a case with its causes and the right SKU (or a catalogue gap when none exists)."""
    locked = _locked_open(bad_case)
    causes = clean_causes(causes)
    if not causes:
        raise ReviewError("Tag at least one failure cause.")
    gap = FailureCause.CATALOGUE_GAP in causes
    if correct_sku is None and not gap:
        raise ReviewError("Set the correct SKU, or flag a catalogue gap.")
    if correct_sku is not None and not correct_sku.is_active:
        raise ReviewError(f"{correct_sku.code} is not an active SKU.")
    if gap:
        # A gap means the catalogue has no right answer; a SKU chosen anyway would be a lie.
        correct_sku = None
    before = {"causes": locked.causes, "correct_sku": locked.correct_sku_id}
    locked.causes = causes
    locked.correct_sku = correct_sku
    if correct_sku is not None:
        locked.category_id = correct_sku.series.brand.category_id
    locked.note = note.strip()
    locked.status = BadCase.Status.RESOLVED
    locked.resolved_by = actor
    locked.resolved_at = timezone.now()
    locked.save()
    if gap:
        CatalogueGap.objects.update_or_create(
            bad_case=locked,
            defaults={"note": locked.note, "reported_by": actor,
                      "status": CatalogueGap.Status.OPEN},
        )
    audit_record(
        actor=actor,
        action="bad_case.resolve",
        obj=locked,
        changes={
            "causes": [before["causes"], causes],
            "correct_sku": [before["correct_sku"], correct_sku.pk if correct_sku else None],
        },
        sku=correct_sku,
    )
    return locked


def bad_case_flag_gap(*, bad_case: BadCase, actor: User, note: str = "",
                      causes: Sequence[str] = ()) -> BadCase:
    """Resolve as "the catalogue lacks this item" and tell the catalogue admins."""
    return bad_case_resolve(
        bad_case=bad_case, actor=actor, causes=[*causes, FailureCause.CATALOGUE_GAP],
        correct_sku=None, note=note,
    )


@transaction.atomic
def bad_case_reopen(*, bad_case: BadCase, actor: User) -> BadCase:
    locked = BadCase.objects.select_for_update().get(pk=bad_case.pk)
    if locked.status == BadCase.Status.OPEN:
        return locked
    locked.status = BadCase.Status.OPEN
    locked.resolved_by, locked.resolved_at = None, None
    locked.save(update_fields=["status", "resolved_by", "resolved_at"])
    CatalogueGap.objects.filter(bad_case=locked, status=CatalogueGap.Status.OPEN).delete()
    audit_record(actor=actor, action="bad_case.reopen", obj=locked)
    return locked


class BulkAction:
    TAG = "tag"
    RESOLVE = "resolve"  # confirm the SKU the appraiser attached
    GAP = "gap"
    CHOICES = (
        (TAG, "Tag with cause"),
        (RESOLVE, "Resolve: the attached SKU is right"),
        (GAP, "Resolve as catalogue gap"),
    )


@dataclass
class BulkResult:
    done: int = 0
    errors: list[str] = field(default_factory=list)


def bad_cases_bulk(
    *, ids: Sequence[int], action: str, actor: User, cause: str = ""
) -> BulkResult:
    """Apply one action to many cases; each case succeeds or fails on its own."""
    result = BulkResult()
    if action not in {a for a, _ in BulkAction.CHOICES}:
        raise ReviewError(f"Unknown bulk action {action!r}.")
    if action == BulkAction.TAG and cause not in FailureCause.values:
        raise ReviewError("Choose the cause to tag.")
    for case in BadCase.objects.filter(pk__in=ids).select_related("correct_sku").order_by("pk"):
        try:
            if action == BulkAction.TAG:
                bad_case_tag(bad_case=case, causes=[cause], actor=actor)
            elif action == BulkAction.RESOLVE:
                causes = case.causes or ([cause] if cause else [])
                bad_case_resolve(bad_case=case, actor=actor, causes=causes,
                                 correct_sku=case.correct_sku, note=case.note)
            else:
                bad_case_flag_gap(bad_case=case, actor=actor, note=case.note,
                                  causes=[cause] if cause else [])
        except ReviewError as exc:
            result.errors.append(f"#{case.pk}: {exc}")
        else:
            result.done += 1
    return result


@transaction.atomic
def catalogue_gap_close(
    *, gap: CatalogueGap, actor: User, status: str, sku: SKU | None = None
) -> CatalogueGap:
    """The admins added the SKU (optionally naming it) or dismissed the notice."""
    if status not in (CatalogueGap.Status.ADDED, CatalogueGap.Status.DISMISSED):
        raise ReviewError("A gap is closed as added or dismissed.")
    locked = CatalogueGap.objects.select_for_update().get(pk=gap.pk)
    locked.status = status
    locked.sku = sku
    locked.closed_by = actor
    locked.closed_at = timezone.now()
    locked.save()
    if sku is not None:
        # The photo now has a right answer: it becomes labelled training data.
        BadCase.objects.filter(pk=locked.bad_case_id).update(
            correct_sku=sku, category_id=sku.series.brand.category_id
        )
    audit_record(actor=actor, action="catalogue_gap.close", obj=locked,
                 changes={"status": ["open", status]}, sku=sku)
    return locked
