"""Which epoch's model a run keeps, and when it stops early.

With ``select="best"`` the epoch with the highest validation Recall@1 is kept and the run stops
after ``patience`` epochs without improvement; with ``select="last"`` every epoch is written.
Without validation photos every epoch is "best": the last one is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class EpochSelection:
    """The best score so far, the epochs since it improved, and the epoch kept.

    Args:
        select: ``"best"`` or ``"last"``.
        patience: epochs without improvement before an early stop (``select="best"`` only).
        validated: whether the run has validation photos (without them it never stops early).
    """

    def __init__(self, select: str, patience: int, *, validated: bool) -> None:
        self.select, self.patience, self.validated = select, patience, validated
        self.best, self.best_epoch, self.stale, self.kept_epoch = -1.0, -1, 0, -1

    def update(self, epoch: int, row: Mapping[str, Any]) -> bool:
        """Score ``epoch`` by its history row; True when its model is to be written (and kept)."""
        score = row.get("val_r1", float(epoch))
        if score > self.best:
            self.best, self.best_epoch, self.stale = score, epoch, 0
        else:
            self.stale += 1
        keep = self.stale == 0 or self.select == "last"
        if keep:
            self.kept_epoch = epoch
        return keep

    @property
    def stop_early(self) -> bool:
        """No validation improvement for ``patience`` epochs (``select="best"`` only)."""
        return self.validated and self.select == "best" and self.stale >= self.patience


__all__ = ["EpochSelection"]
