"""Per-category "confident match" thresholds, fitted on what appraisers decided."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from django.conf import settings
from django.db import transaction

from ml.calibrate import calibrate_threshold
from webapp.catalog.models import Category
from webapp.matching.models import Candidate, Decision, ScoreThreshold


def _reviewed_top_candidates() -> dict[int, tuple[list[float], list[bool]]]:
    """Per predicted category: top-candidate scores and whether the top candidate was right."""
    decided = Decision.objects.values_list("request_id", "outcome", "sku_id")
    verdicts = {request_id: (outcome, sku_id) for request_id, outcome, sku_id in decided}
    tops = Candidate.objects.filter(rank=1, request_id__in=verdicts.keys()).values_list(
        "request_id", "score", "sku_id", "sku__series__brand__category_id"
    )
    samples: dict[int, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
    for request_id, score, sku_id, category_id in tops:
        outcome, decided_sku = verdicts[request_id]
        right = outcome != Decision.Outcome.REJECT and decided_sku == sku_id
        samples[category_id][0].append(score)
        samples[category_id][1].append(right)
    return samples


@transaction.atomic
def thresholds_recalibrate(
    *, target_precision: float | None = None, min_support: int | None = None
) -> list[ScoreThreshold]:
    """Refit every category with enough decisions; others keep the global default."""
    target = target_precision or settings.CALIBRATION_TARGET_PRECISION
    support = min_support or settings.CALIBRATION_MIN_DECISIONS
    fitted = []
    for category_id, (scores, right) in _reviewed_top_candidates().items():
        fit = calibrate_threshold(
            np.asarray(scores), np.asarray(right), target_precision=target, min_support=support
        )
        if fit is None:
            ScoreThreshold.objects.filter(category_id=category_id).delete()
            continue
        row, _ = ScoreThreshold.objects.update_or_create(
            category_id=category_id,
            defaults={
                "threshold": fit.threshold,
                "target_precision": target,
                "precision": fit.precision,
                "coverage": fit.coverage,
                "support": fit.support,
                "decisions": len(scores),
            },
        )
        fitted.append(row)
    return fitted


def confident_threshold(category: Category | None) -> float:
    if category is not None:
        row = ScoreThreshold.objects.filter(category=category).first()
        if row is not None:
            return row.threshold
    return settings.CONFIDENT_SCORE
