"""Fits on stored decisions: the confident-match threshold and the evidence fusion
(webapp.matching.calibration hands in the scores and features, and stores the results)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ml.calibrate import ThresholdFit, calibrate_threshold
from ml.rerank.fusion import FusionModel, fit_fusion
from webapp.ml_gateway.sources import FittedFusion


def threshold_fit(
    scores: Sequence[float], right: Sequence[bool], *, target_precision: float, min_support: int
) -> ThresholdFit | None:
    """The lowest threshold on top-candidate `scores [n]` whose precision (`right [n]`: the top
    candidate was the SKU attached) reaches the target over `min_support` matches, or None."""
    return calibrate_threshold(np.asarray(scores), np.asarray(right),
                               target_precision=target_precision, min_support=min_support)


def fusion_fit(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[bool],
    *,
    groups: Sequence[int],
    threshold_precision: float,
    source: str,
) -> FittedFusion:
    """The fusion's logistic regression fitted on candidates' evidence features and whether
    each was the SKU attached (grouped by request), as weights to store."""
    model = fit_fusion(rows, labels, groups=groups, threshold_precision=threshold_precision,
                       source=source)
    return weights_of(model)


def weights_of(model: FusionModel) -> FittedFusion:
    return FittedFusion(dict(model.weights), model.intercept, model.threshold, model.source,
                         dict(model.metrics))
