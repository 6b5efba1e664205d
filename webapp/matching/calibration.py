"""Fitted on what appraisers decided: the re-ranking's fusion weights, and per-category
"confident match" thresholds. Both are refitted by the same daily beat task."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from webapp import ml_gateway
from webapp.catalog.models import Category
from webapp.matching.models import Candidate, Decision, FusionWeights, ScoreThreshold


def _verdicts() -> dict[int, tuple[str, int | None]]:
    decided = Decision.objects.values_list("request_id", "outcome", "sku_id")
    return {request_id: (outcome, sku_id) for request_id, outcome, sku_id in decided}


def _right(verdict: tuple[str, int | None], sku_id: int) -> bool:
    outcome, decided_sku = verdict
    return outcome != Decision.Outcome.REJECT and decided_sku == sku_id


def _reviewed_top_candidates() -> dict[int, tuple[list[float], list[bool]]]:
    """Per predicted category: top-candidate scores and whether the top candidate was right.

    A request the re-ranking stage scored is re-scored with the fusion now in use (from the
    features it stored), so thresholds and fusion always describe the same score."""
    verdicts = _verdicts()
    fusion = active_fusion()
    best: dict[int, tuple[float, int, int]] = {}
    rows = Candidate.objects.filter(request_id__in=verdicts.keys()).values_list(
        "request_id", "rank", "score", "sku_id", "sku__series__brand__category_id", "evidence"
    )
    for request_id, rank, score, sku_id, category_id, evidence in rows:
        features = (evidence or {}).get("features")
        if features:
            score = fusion.probability(features)
        elif rank != 1:
            continue
        if request_id not in best or score > best[request_id][0]:
            best[request_id] = (score, sku_id, category_id)
    samples: dict[int, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
    for request_id, (score, sku_id, category_id) in best.items():
        samples[category_id][0].append(score)
        samples[category_id][1].append(_right(verdicts[request_id], sku_id))
    return samples


def fitted_fusion() -> ml_gateway.FittedFusion | None:
    """The newest fusion fitted on decisions (None: none yet), as plain data."""
    row = FusionWeights.objects.first()
    if row is None:
        return None
    return ml_gateway.FittedFusion(dict(row.weights), row.intercept, row.threshold, row.source,
                                   dict(row.metrics))


def active_fusion() -> ml_gateway.FusionModel:
    """The newest fusion fitted on decisions, else the measured default."""
    return ml_gateway.fusion_model(fitted_fusion())


@transaction.atomic
def fusion_recalibrate(*, min_decisions: int | None = None) -> FusionWeights | None:
    """Refit the fusion on every decided request whose candidates carry evidence features:
    a candidate is right when it is the SKU finally attached. None (the current fusion stays)
    with fewer than `min_decisions` such requests or without both outcomes."""
    needed = min_decisions or settings.FUSION_MIN_DECISIONS
    verdicts = _verdicts()
    rows, labels, groups = [], [], []
    for request_id, sku_id, evidence in Candidate.objects.filter(
        request_id__in=verdicts.keys()
    ).values_list("request_id", "sku_id", "evidence"):
        features = (evidence or {}).get("features")
        if features:
            rows.append(features)
            labels.append(_right(verdicts[request_id], sku_id))
            groups.append(request_id)
    decided = len(set(groups))
    if decided < needed or all(labels) or not any(labels):
        return None
    model = ml_gateway.fusion_fit(rows, labels, groups=groups,
                                  threshold_precision=settings.CALIBRATION_TARGET_PRECISION,
                                  source=f"decisions:{decided}")
    return FusionWeights.objects.create(
        weights=dict(model.weights), intercept=model.intercept, threshold=model.threshold,
        source=model.source, decisions=decided, metrics=dict(model.metrics),
    )


@transaction.atomic
def thresholds_recalibrate(
    *, target_precision: float | None = None, min_support: int | None = None
) -> list[ScoreThreshold]:
    """Refit every category with enough decisions; others keep the global default."""
    target = target_precision or settings.CALIBRATION_TARGET_PRECISION
    support = min_support or settings.CALIBRATION_MIN_DECISIONS
    fitted = []
    for category_id, (scores, right) in _reviewed_top_candidates().items():
        fit = ml_gateway.threshold_fit(scores, right, target_precision=target,
                                       min_support=support)
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


CALIBRATION_CACHE_KEY = "skulens:calibration-thresholds"


def calibration_thresholds() -> tuple[dict[int, float], float | None]:
    """Every category's fitted threshold and the newest fusion's, cached for
    SKULENS_CALIBRATION_CACHE_S: pages read them on every view, the daily task refits them.
    A refit or an edit clears the entry in its own process (webapp.matching.receivers);
    other processes see it when theirs expires."""
    cached = cache.get(CALIBRATION_CACHE_KEY)
    if cached is None:
        cached = (
            dict(ScoreThreshold.objects.values_list("category_id", "threshold")),
            FusionWeights.objects.values_list("threshold", flat=True).first(),
        )
        cache.set(CALIBRATION_CACHE_KEY, cached, settings.CALIBRATION_CACHE_S)
    return cached


def confident_threshold(category: Category | None) -> float:
    """The category's calibrated threshold; until it has one, that of the fusion refitted on
    decisions (when there is one), else SKULENS_CONFIDENT_SCORE."""
    by_category, fused = calibration_thresholds()
    if category is not None and category.pk in by_category:
        return by_category[category.pk]
    if settings.RERANK and fused is not None:
        return fused
    return settings.CONFIDENT_SCORE
