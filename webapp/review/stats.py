"""Statistics of the learning loop, as plain series for the plots and tables (selectors)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
from django.db.models import QuerySet
from django.utils import timezone

from webapp.matching.models import Candidate, Decision, MatchRequest
from webapp.review.models import BadCase, FailureCause

UNTAGGED = "untagged"
MAX_CATEGORIES = 8


def _live_decisions() -> QuerySet[Decision]:
    """Decisions appraisers made on live matches; imported history (webapp.history) is not."""
    return Decision.objects.exclude(request__source=MatchRequest.Source.HISTORY)


def _live_requests() -> QuerySet[MatchRequest]:
    return MatchRequest.objects.exclude(source=MatchRequest.Source.HISTORY)


@dataclass(frozen=True)
class Window:
    days: int
    start: datetime
    weekly: bool

    @classmethod
    def last(cls, days: int) -> Window:
        days = max(1, min(days, 730))
        return cls(days, timezone.now() - timedelta(days=days), weekly=days > 60)

    def bucket(self, moment: datetime) -> date:
        day = timezone.localtime(moment).date()
        return day - timedelta(days=day.weekday()) if self.weekly else day

    def buckets(self) -> list[date]:
        first, last = self.bucket(self.start), self.bucket(timezone.now())
        step = timedelta(days=7 if self.weekly else 1)
        out = []
        while first <= last:
            out.append(first)
            first += step
        return out


@dataclass
class Series:
    """Counts (or rates) per bucket for several named lines."""

    buckets: list[date]
    lines: dict[str, list[float]] = field(default_factory=dict)

    def totals(self) -> dict[str, float]:
        return {name: float(np.nansum(values)) for name, values in self.lines.items()}


def _count_series(window: Window, rows: list[tuple[datetime, list[str]]]) -> Series:
    buckets = window.buckets()
    position = {b: i for i, b in enumerate(buckets)}
    lines: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(buckets))
    for moment, names in rows:
        i = position.get(window.bucket(moment))
        if i is None:
            continue
        for name in names:
            lines[name][i] += 1
    return Series(buckets, dict(lines))


def bad_cases_by_cause(window: Window) -> Series:
    labels = dict(FailureCause.choices)
    rows = [
        (created, [labels.get(c, c) for c in causes] or [UNTAGGED])
        for created, causes in BadCase.objects.filter(created_at__gte=window.start)
        .values_list("created_at", "causes")
    ]
    return _count_series(window, rows)


def bad_cases_by_category(window: Window) -> Series:
    rows = list(
        BadCase.objects.filter(created_at__gte=window.start).values_list(
            "created_at", "category__name"
        )
    )
    common = [name for name, _ in Counter(n or "unknown" for _, n in rows).most_common()]
    keep = set(common[:MAX_CATEGORIES])
    return _count_series(
        window,
        [(t, [(n or "unknown") if (n or "unknown") in keep else "other"]) for t, n in rows],
    )


def _ranks_of_decisions(decisions: list[tuple[int, int | None]]) -> dict[int, int | None]:
    """request id -> the 1-based rank of the final SKU among its candidates (None: absent)."""
    wanted = dict(decisions)
    ranks: dict[int, int | None] = {request_id: None for request_id in wanted}
    for request_id, rank, sku_id in Candidate.objects.filter(
        request_id__in=wanted.keys()
    ).values_list("request_id", "rank", "sku_id"):
        best = ranks[request_id]
        if sku_id == wanted[request_id] and (best is None or rank < best):
            ranks[request_id] = rank
    return ranks


def _final_skus(since: datetime) -> list[tuple[int, datetime, str, str, int | None]]:
    """(request id, decided at, outcome, model version, final SKU id) of decisions since then.

    The final SKU is QA's correct SKU when a resolved bad case says so, else the SKU the
    appraiser attached; None for rejects nobody could attach, and catalogue gaps."""
    corrected = dict(
        BadCase.objects.filter(status=BadCase.Status.RESOLVED, decision__decided_at__gte=since)
        .values_list("request_id", "correct_sku_id")
    )
    rows = _live_decisions().filter(decided_at__gte=since).values_list(
        "request_id", "decided_at", "outcome", "model_version", "sku_id"
    )
    return [(r, t, o, m, corrected.get(r, s) if r in corrected else s) for r, t, o, m, s in rows]


def acceptance(window: Window) -> Series:
    """Per bucket: share of decisions that accepted a candidate, and that accepted the first."""
    rows = _final_skus(window.start)
    accepted = dict(
        _live_decisions().filter(decided_at__gte=window.start, outcome=Decision.Outcome.ACCEPT)
        .values_list("request_id", "candidate__rank")
    )
    buckets = window.buckets()
    position = {b: i for i, b in enumerate(buckets)}
    n = np.zeros(len(buckets))
    any_ok = np.zeros(len(buckets))
    top_ok = np.zeros(len(buckets))
    for request_id, decided_at, _outcome, _model, _sku in rows:
        i = position.get(window.bucket(decided_at))
        if i is None:
            continue
        n[i] += 1
        if request_id in accepted:
            any_ok[i] += 1
            top_ok[i] += accepted[request_id] == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return Series(buckets, {
            "accepted a candidate": list(np.where(n > 0, any_ok / n, np.nan)),
            "accepted the first": list(np.where(n > 0, top_ok / n, np.nan)),
            "decisions": list(n),
        })


@dataclass(frozen=True)
class VersionAccuracy:
    model_version: str
    decisions: int
    top1: float
    top4: float


def accuracy_by_model_version(window: Window) -> list[VersionAccuracy]:
    """Top-1 / Top-4 of live decisions, per model version they were made with."""
    rows = [r for r in _final_skus(window.start) if r[4] is not None]
    ranks = _ranks_of_decisions([(r[0], r[4]) for r in rows])
    groups: dict[str, list[int | None]] = defaultdict(list)
    for request_id, _t, _o, model_version, _sku in rows:
        groups[model_version or "unknown"].append(ranks[request_id])
    out = []
    for version, found in groups.items():
        n = len(found)
        out.append(VersionAccuracy(
            version, n,
            sum(1 for r in found if r == 1) / n,
            sum(1 for r in found if r is not None and r <= 4) / n,
        ))
    return sorted(out, key=lambda v: v.model_version)


@dataclass
class Latency:
    buckets: list[date]
    p50_ms: list[float]
    p95_ms: list[float]
    count: list[int]
    stage_mean_ms: dict[str, float]


def match_latency(window: Window) -> Latency:
    """End-to-end time of finished matches (queue wait included) and mean time per stage."""
    buckets = window.buckets()
    position = {b: i for i, b in enumerate(buckets)}
    per: list[list[float]] = [[] for _ in buckets]
    stages: dict[str, list[float]] = defaultdict(list)
    rows = _live_requests().filter(
        status=MatchRequest.Status.DONE, created_at__gte=window.start, finished_at__isnull=False
    ).values_list("created_at", "finished_at", "timings_ms")
    for created, finished, timings in rows:
        i = position.get(window.bucket(created))
        if i is not None and finished is not None:  # always finished: the filter says so
            per[i].append((finished - created).total_seconds() * 1000)
        for stage, ms in (timings or {}).items():
            stages[stage].append(float(ms))

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    return Latency(
        buckets,
        [pct(v, 50) for v in per],
        [pct(v, 95) for v in per],
        [len(v) for v in per],
        {stage: float(np.mean(v)) for stage, v in stages.items()},
    )


def summary(window: Window) -> dict[str, object]:
    """Headline numbers for the top of the page."""
    decided = _live_decisions().filter(decided_at__gte=window.start)
    n = decided.count()
    accepted = decided.filter(outcome=Decision.Outcome.ACCEPT).count()
    cases = BadCase.objects.filter(created_at__gte=window.start)
    return {
        "decisions": n,
        "acceptance": accepted / n if n else None,
        "bad_cases": cases.count(),
        "open": cases.filter(status=BadCase.Status.OPEN).count(),
        "resolved": cases.filter(status=BadCase.Status.RESOLVED).count(),
        "matches": _live_requests().filter(created_at__gte=window.start).count(),
    }
