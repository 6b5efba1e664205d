"""Choose a "confident match" threshold from reviewed decisions.

Each reviewed match contributes its top candidate's score and whether that candidate was the
right SKU. The threshold is the lowest score at which the matches scoring at least that much
reach the target precision, so the confident label is as inclusive as the target allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ThresholdFit:
    threshold: float
    precision: float  # among matches scoring >= threshold
    coverage: float  # share of all matches scoring >= threshold
    support: int  # matches scoring >= threshold


def calibrate_threshold(
    scores: np.ndarray, correct: np.ndarray, *, target_precision: float, min_support: int = 20
) -> ThresholdFit | None:
    """Lowest threshold whose precision >= target over at least `min_support` matches.

    Args:
        scores: [n] top-candidate scores in [0, 1].
        correct: [n] bool, the top candidate was the SKU finally attached.
    Returns None when no threshold reaches the target with enough support.
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if scores.shape != correct.shape or scores.ndim != 1:
        raise ValueError("scores and correct must be 1-d and of equal length")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_correct = scores[order], correct[order]
    hits = np.cumsum(sorted_correct)
    counts = np.arange(1, len(scores) + 1)
    # Only cut between distinct scores: a threshold keeps every match with that score.
    last_of_run = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    precision = hits / counts
    ok = last_of_run & (precision >= target_precision) & (counts >= min_support)
    if not ok.any():
        return None
    best = int(np.flatnonzero(ok)[-1])
    return ThresholdFit(
        threshold=float(sorted_scores[best]),
        precision=float(precision[best]),
        coverage=float(counts[best] / len(scores)),
        support=int(counts[best]),
    )
