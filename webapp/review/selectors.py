"""Bad-case reads: the QA queue with its filters, one case with everything QA needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple, TypedDict

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import F, OrderBy, OuterRef, Prefetch, QuerySet, Subquery
from django.utils import timezone

from webapp.catalog.models import SKU, Category
from webapp.matching.models import Candidate, MatchRequest
from webapp.review.models import BadCase, CatalogueGap, FailureCause

AGES = {
    "1d": ("Last 24 hours", timedelta(days=1), None),
    "7d": ("Last 7 days", timedelta(days=7), None),
    "old7": ("Older than 7 days", None, timedelta(days=7)),
    "old30": ("Older than 30 days", None, timedelta(days=30)),
}
SORTS: dict[str, tuple[str, list[str | OrderBy]]] = {
    "margin": ("Closest calls first", [F("margin").asc(nulls_last=True), "-created_at"]),
    "newest": ("Newest first", ["-created_at"]),
    "oldest": ("Oldest first", ["created_at"]),
}
NO_CAUSE = "none"


@dataclass(frozen=True)
class QueueFilters:
    status: str = BadCase.Status.OPEN
    cause: str = ""
    category: int | None = None
    model_version: str = ""
    age: str = ""
    sort: str = "margin"

    @classmethod
    def from_query(cls, query: dict[str, str]) -> QueueFilters:
        from webapp.params import choice_param, int_param

        return cls(
            status=choice_param(query, "status", [*BadCase.Status.values, "all"],
                                BadCase.Status.OPEN, strict=False),
            cause=choice_param(query, "cause", [*FailureCause.values, NO_CAUSE], "",
                               strict=False),
            category=int_param(query, "category", strict=False),
            model_version=(query.get("model_version") or "")[:120],
            age=choice_param(query, "age", list(AGES), "", strict=False),
            sort=choice_param(query, "sort", list(SORTS), "margin", strict=False),
        )


def _with_cause(cases: QuerySet[BadCase], cause: str) -> QuerySet[BadCase]:
    if cause == NO_CAUSE:
        return cases.filter(causes=[])
    if connection.features.supports_json_field_contains:
        return cases.filter(causes__contains=[cause])
    # SQLite has no JSON containment: filter the (small) list of ids in Python.
    ids = [pk for pk, causes in cases.values_list("pk", "causes") if cause in (causes or [])]
    return cases.filter(pk__in=ids)


def _queue_cases(filters: QueueFilters) -> QuerySet[BadCase]:
    cases = BadCase.objects.all()
    if filters.status != "all":
        cases = cases.filter(status=filters.status)
    if filters.cause:
        cases = _with_cause(cases, filters.cause)
    if filters.category:
        cases = cases.filter(category_id=filters.category)
    if filters.model_version:
        cases = cases.filter(request__model_version=filters.model_version)
    if filters.age:
        _label, newer_than, older_than = AGES[filters.age]
        now = timezone.now()
        if newer_than:
            cases = cases.filter(created_at__gte=now - newer_than)
        if older_than:
            cases = cases.filter(created_at__lt=now - older_than)
    return cases.order_by(*SORTS[filters.sort][1])


def bad_case_queue(
    *, status: str = BadCase.Status.OPEN, filters: QueueFilters | None = None
) -> QuerySet[BadCase]:
    """Low-margin cases first (the top two candidates were close), unless sorted otherwise."""
    cases = _queue_cases(filters or QueueFilters(status=status))
    top = Candidate.objects.filter(rank=1).select_related("sku").defer("evidence")
    # What the queue's rows show. Two joins only: PostgreSQL plans every order of a many-way
    # join, and with the request's creator, the resolver and both SKUs joined as well the
    # planning alone took 50-100 ms a page (docs/benchmarks.md, "Page latency (issue 14)");
    # the SKUs and the category come from the small tables in one query each instead.
    return (
        cases.select_related("request", "decision")
        .prefetch_related("decision__sku", "correct_sku", "category",
                          Prefetch("request__candidates", top, "top"))
    )


class QueuePageState(NamedTuple):
    """What one page of the queue shows that can change, as plain values (for its ETag)."""

    total: int
    number: int
    rows: list[tuple[Any, ...]]  # one a case: QUEUE_ROW_FIELDS
    codes: list[tuple[int, str]]  # (pk, code) of the SKUs the rows name

    @property
    def opened(self) -> list[Any]:
        return [row[QUEUE_ROW_FIELDS.index("created_at")] for row in self.rows]


QUEUE_ROW_FIELDS = (
    "pk", "status", "causes", "margin", "created_at", "request_id", "request__model_version",
    "decision__outcome", "decision__sku_id", "correct_sku_id", "category_id", "top_sku_id",
    "top_score",
)
_QUEUE_ROW_SKUS = [QUEUE_ROW_FIELDS.index(f) for f in ("decision__sku_id", "correct_sku_id",
                                                       "top_sku_id")]


def queue_page_state(*, filters: QueueFilters, page: int | None, per_page: int
                     ) -> QueuePageState:
    """One page of the queue without building a row: its cases as values (status, causes,
    margin, decision, correct SKU, category, top candidate), the codes of the SKUs they name,
    the case count and the page number."""
    cases = _queue_cases(filters)
    shown = Paginator(cases, per_page).get_page(page)  # counts the cases alone, no joins
    first = (shown.number - 1) * per_page
    top = Candidate.objects.filter(request_id=OuterRef("request_id"), rank=1)
    rows = cases.annotate(
        top_sku_id=Subquery(top.values("sku_id")[:1]),
        top_score=Subquery(top.values("score")[:1]),
    ).values_list(*QUEUE_ROW_FIELDS)[first:first + per_page]
    values = [tuple(row) for row in rows]
    sku_ids = {row[i] for row in values for i in _QUEUE_ROW_SKUS if row[i] is not None}
    codes = sorted(SKU.objects.filter(pk__in=sku_ids).values_list("pk", "code"))
    return QueuePageState(shown.paginator.count, shown.number, values, codes)


QUEUE_MODEL_VERSIONS_CACHE_KEY = "skulens:queue-model-versions"


def queue_model_versions() -> list[str]:
    """The model versions that served a request with a bad case. Reading them scans every bad
    case, so they are cached for SKULENS_QUEUE_CHOICES_CACHE_S; a new case clears the entry."""
    versions = cache.get(QUEUE_MODEL_VERSIONS_CACHE_KEY)
    if versions is None:
        versions = list(
            MatchRequest.objects.filter(bad_case__isnull=False)
            .exclude(model_version="")
            .values_list("model_version", flat=True)
            .distinct()
            .order_by("model_version")
        )
        cache.set(QUEUE_MODEL_VERSIONS_CACHE_KEY, versions, settings.QUEUE_CHOICES_CACHE_S)
    return list(versions)


class QueueChoices(TypedDict):
    """Options of the queue's filter bar, as the template names them."""

    causes: list[tuple[str, str]]
    categories: list[Category]
    model_versions: list[str]
    ages: list[tuple[str, str]]
    sorts: list[tuple[str, str]]
    statuses: list[tuple[str, str]]


def queue_choices() -> QueueChoices:
    """Options of the queue's filter bar."""
    return {
        "causes": FailureCause.choices,
        "categories": list(Category.objects.filter(
            pk__in=BadCase.objects.values("category_id")
        ).order_by("name")),
        "model_versions": queue_model_versions(),
        "ages": [(key, label) for key, (label, _a, _b) in AGES.items()],
        "sorts": [(key, label) for key, (label, _o) in SORTS.items()],
        "statuses": [*BadCase.Status.choices, ("all", "All")],
    }


def bad_case_detail(*, case_id: int) -> BadCase:
    return (
        BadCase.objects.select_related(
            "request__created_by", "request__category",
            "decision__sku__series__brand__category", "decision__decided_by",
            "correct_sku__series__brand__category", "resolved_by", "category",
        )
        .prefetch_related(
            "request__photos",
            Prefetch(
                "request__candidates",
                Candidate.objects.select_related(
                    "sku__series__brand__category", "reference_image", "query_photo"
                ).order_by("rank"),
            ),
        )
        .get(pk=case_id)
    )


def next_open_case(*, after: BadCase) -> BadCase | None:
    """The next case in the default queue order, skipping `after`."""
    return bad_case_queue().exclude(pk=after.pk).first()


def open_case_count() -> int:
    return BadCase.objects.filter(status=BadCase.Status.OPEN).count()


def catalogue_gaps(*, status: str = CatalogueGap.Status.OPEN) -> QuerySet[CatalogueGap]:
    gaps = CatalogueGap.objects.select_related(
        "bad_case__request", "bad_case__category", "reported_by", "closed_by", "sku"
    ).prefetch_related("bad_case__request__photos")
    return gaps if status == "all" else gaps.filter(status=status)
