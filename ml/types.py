"""Plain, frozen data passed between ``ml`` and its callers (the webapp gateway, the CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


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
class Isolation:
    """Where the item is in one photo, and how that was decided."""

    box: Box
    source: str  # "detector", "full_frame" or "corrected"
    label: str = ""
    confidence: float | None = None
    mask: np.ndarray | None = None  # [height, width] bool, True on the item


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
class QueryOutcome:
    """One labelled query's result: the fused SKU ranking, where its label came, and AP@R."""

    ranking: list[SkuScore]
    rank: int | None  # 0-based position of the label in ``ranking``; None when absent
    ap_at_r: float

    def hit(self, k: int) -> bool:
        return self.rank is not None and self.rank < k


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
