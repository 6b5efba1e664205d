"""Reads for the history import pages."""

from __future__ import annotations

from django.db.models import QuerySet

from webapp.history.models import HistoryImport
from webapp.history.planning import Action, HistoryPlan, RowPlan

ROWS_SHOWN = 1000
FILTERS = ("all", Action.REJECT, Action.SKIP, Action.IMPORT)


def recent_imports(*, limit: int = 10) -> QuerySet[HistoryImport]:
    return HistoryImport.objects.select_related("created_by", "applied_by")[:limit]


def plan_rows_shown(plan: HistoryPlan, show: str) -> tuple[list[RowPlan], int]:
    """The rows the page lists (rejected first when any), and how many match the filter."""
    rows = plan.rows if show == "all" else [r for r in plan.rows if r.action == show]
    if show == "all":
        rows = sorted(rows, key=lambda r: (r.action != Action.REJECT, r.action != Action.SKIP,
                                           r.line))
    return rows[:ROWS_SHOWN], len(rows)
