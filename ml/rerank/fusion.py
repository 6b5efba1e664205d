"""Calibrated fusion: the visual score and the evidence -> P(this candidate is the SKU).

A logistic regression over a few features per candidate (:data:`FEATURES`). Its logit is a
weighted sum, so each kind of evidence's *contribution* to a candidate's score is simply
``weight * feature``: what the result page shows. Candidates are ranked by the probability,
and the first is a confident match when its probability reaches the threshold.

:data:`DEFAULT_FUSION` was measured on grocery val (weights fitted on one half of val, the
figures reported on the other; docs/benchmarks.md, "Re-ranking with evidence"). The web app
refits it on appraisers' decisions (:func:`fit_fusion`), daily, once there are enough.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# visual: the fused cosine; visual_gap: cosine minus the first candidate's (<= 0), which lets
# the model say "far behind the first" whatever the model's cosine scale; the rest are the
# evidence kinds' scores (0 when a kind is off or found nothing).
FEATURES = (
    "visual", "visual_gap", "spatial", "text", "attributes", "query_text", "soft_attributes",
)
# Which evidence kind each feature belongs to, for the contributions shown on the page.
KIND_OF = {
    "visual": "visual", "visual_gap": "visual", "spatial": "spatial", "text": "text",
    "attributes": "attributes", "query_text": "query_text", "soft_attributes": "soft_attributes",
}
MIN_DECISIONS = 50  # candidates' requests with a decision before a refit replaces the default


@dataclass(frozen=True)
class FusionModel:
    """``P = sigmoid(intercept + sum_f weights[f] * x[f])``; unknown features weigh 0."""

    weights: Mapping[str, float]
    intercept: float
    threshold: float = 0.5  # probability from which the first candidate is a confident match
    source: str = "default"  # "default" or how it was fitted ("decisions:<n>")
    metrics: Mapping[str, float] = field(default_factory=dict)

    def logit(self, features: Mapping[str, float]) -> float:
        return self.intercept + sum(
            w * float(features.get(name, 0.0)) for name, w in self.weights.items()
        )

    def probability(self, features: Mapping[str, float]) -> float:
        z = self.logit(features)
        return 1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0

    def contributions(self, features: Mapping[str, float]) -> dict[str, float]:
        """Evidence kind -> its part of the logit (``weight * feature`` summed per kind)."""
        out: dict[str, float] = {}
        for name, w in self.weights.items():
            kind = KIND_OF.get(name, name)
            out[kind] = out.get(kind, 0.0) + w * float(features.get(name, 0.0))
        return {k: round(v, 4) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights), "intercept": self.intercept,
            "threshold": self.threshold, "source": self.source, "metrics": dict(self.metrics),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionModel:
        return cls(
            weights={str(k): float(v) for k, v in dict(data["weights"]).items()},
            intercept=float(data["intercept"]),
            threshold=float(data.get("threshold", 0.5)),
            source=str(data.get("source", "stored")),
            metrics={str(k): float(v) for k, v in dict(data.get("metrics", {})).items()},
        )


# Measured by bench/rerank.py on grocery val (docs/benchmarks.md, "Re-ranking with evidence"):
# visual, visual_gap, spatial, text and the intercept fitted on val half 0 (alternate photos of
# each product) with the lead's trained model (e1 run, epoch-4 checkpoint), cold gallery, K = 8;
# query_text and soft_attributes from the same half with three description words and the coarse
# class typed for every query. threshold: the lowest probability at which the first candidate
# was right in 95% of half-0 queries. attributes: not measured (no model with heads yet), set to
# the weight of one typed attribute's order. The web app refits all of it on its decisions.
DEFAULT_FUSION = FusionModel(
    weights={
        "visual": 6.3527, "visual_gap": 6.6150, "spatial": 0.2418, "text": 0.3194,
        "query_text": 1.4798, "soft_attributes": 1.8944, "attributes": 1.9,
    },
    intercept=-4.5909,
    threshold=0.58,
    source="default",
)


def feature_matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str] = FEATURES
                   ) -> np.ndarray:
    """``[n, len(names)]`` float64 from feature dicts (missing = 0)."""
    return np.array([[float(r.get(n, 0.0)) for n in names] for r in rows], dtype=np.float64)


def fit_fusion(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[bool],
    *,
    names: Sequence[str] = FEATURES,
    threshold_precision: float | None = 0.95,
    groups: Sequence[int] | None = None,
    regularisation: float = 1.0,
    source: str = "fitted",
) -> FusionModel:
    """Fit the logistic regression on candidates with known outcomes.

    Args:
        rows: one feature dict per candidate (every candidate of every decided query).
        labels: whether each candidate was the right SKU.
        names: features to use (others get weight 0: e.g. a kind that was never on).
        threshold_precision: the confident threshold is the lowest probability at which the
            first candidates scoring at least that much reach this precision (``groups``
            says which rows belong to one query); None keeps 0.5.
        groups: query id of each row (needed for the threshold).
        regularisation: inverse L2 strength ``C`` of scikit-learn's LogisticRegression.

    Raises:
        ValueError: fewer than two classes among the labels.
    """
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("fusion needs both right and wrong candidates to fit")
    x = feature_matrix(rows, names)
    used = [i for i, _ in enumerate(names) if np.any(x[:, i] != 0)]
    model = LogisticRegression(C=regularisation, max_iter=2000)
    model.fit(x[:, used], y)
    weights = {names[i]: float(w) for i, w in zip(used, model.coef_[0], strict=True)}
    fitted = FusionModel(weights, float(model.intercept_[0]), source=source)
    threshold = 0.5
    if threshold_precision is not None and groups is not None:
        threshold = confident_threshold(fitted, rows, y, groups, threshold_precision) or 0.5
    probabilities = np.array([fitted.probability(r) for r in rows])
    metrics = {"n": float(len(y)), "positives": float(y.sum()),
               "log_loss": float(_log_loss(probabilities, y))}
    return FusionModel(weights, fitted.intercept, threshold, source, metrics)


def confident_threshold(
    model: FusionModel,
    rows: Sequence[Mapping[str, float]],
    labels: np.ndarray,
    groups: Sequence[int],
    precision: float,
    *,
    min_support: int = 20,
) -> float | None:
    """Lowest probability at which the top-ranked candidate is right in ``precision`` of the
    queries scoring at least that much (:func:`ml.calibrate.calibrate_threshold`)."""
    from ml.calibrate import calibrate_threshold

    best: dict[int, tuple[float, bool]] = {}
    for row, label, group in zip(rows, labels, groups, strict=True):
        p = model.probability(row)
        if group not in best or p > best[group][0]:
            best[group] = (p, bool(label))
    if not best:
        return None
    scores = np.array([v[0] for v in best.values()])
    right = np.array([v[1] for v in best.values()])
    fit = calibrate_threshold(scores, right, target_precision=precision,
                              min_support=min(min_support, len(scores)))
    return None if fit is None else fit.threshold


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))


__all__ = [
    "DEFAULT_FUSION",
    "FEATURES",
    "KIND_OF",
    "MIN_DECISIONS",
    "FusionModel",
    "confident_threshold",
    "feature_matrix",
    "fit_fusion",
]
