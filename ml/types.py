"""Plain, frozen data passed between ``ml`` and its callers (the webapp gateway, the CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixels of the EXIF-oriented image: (x0, y0) top-left, (x1, y1)
    bottom-right (exclusive)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class SkuScore:
    """One candidate SKU.

    ``cosine`` is the evidence behind ``score`` (its [0, 1] mapping); ``query_index`` and
    ``reference_id`` name the query photo and the reference image that gave it, so a page can
    show them side by side.
    """

    sku_id: int
    score: float
    cosine: float
    query_index: int
    reference_id: int


@dataclass(frozen=True)
class Ranking:
    """Result of one match request: candidates best first, per-stage timings, one box per photo."""

    candidates: list[SkuScore]
    timings_ms: dict[str, float]
    boxes: list[Box | None] = field(default_factory=list)


@dataclass(frozen=True)
class EvalReport:
    """Retrieval metrics over ``n_queries`` queries (each value a fraction in [0, 1])."""

    recall_at_1: float
    recall_at_4: float
    recall_at_10: float
    map_at_r: float
    n_queries: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
