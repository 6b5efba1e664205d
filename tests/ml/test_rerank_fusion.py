"""Calibrated fusion: recovers a known logistic model, is calibrated, thresholds reach the
target precision, and explains each score as per-kind contributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml.rerank.fusion import DEFAULT_FUSION, FEATURES, FusionModel, fit_fusion


def simulated(rng: np.random.Generator, n_queries: int, per_query: int = 4):
    """Candidates whose labels are drawn from a known logistic model of two features."""
    true = {"visual": 6.0, "spatial": 1.5}
    intercept = -4.0
    rows, labels, groups = [], [], []
    for q in range(n_queries):
        for _ in range(per_query):
            row = {"visual": float(rng.uniform(0.2, 0.9)), "spatial": float(rng.exponential(1.0))}
            z = intercept + sum(true[k] * row[k] for k in true)
            rows.append(row)
            labels.append(bool(rng.random() < 1 / (1 + math.exp(-z))))
            groups.append(q)
    return rows, labels, groups, true, intercept


def test_fit_recovers_the_generating_weights(rng):
    rows, labels, groups, true, intercept = simulated(rng, 3000)
    model = fit_fusion(rows, labels, groups=groups, regularisation=100.0)
    assert model.weights["visual"] == pytest.approx(true["visual"], rel=0.12)
    assert model.weights["spatial"] == pytest.approx(true["spatial"], rel=0.12)
    assert model.intercept == pytest.approx(intercept, abs=0.5)
    assert set(model.weights) == {"visual", "spatial"}  # features that were always 0 are left out


def test_fitted_probabilities_are_calibrated(rng):
    rows, labels, groups, _, _ = simulated(rng, 3000)
    model = fit_fusion(rows, labels, groups=groups)
    test_rows, test_labels, _, _, _ = simulated(np.random.default_rng(99), 2000)
    p = np.array([model.probability(r) for r in test_rows])
    y = np.array(test_labels)
    # Reliability: in each probability decile the observed rate is within 0.05 of the mean.
    edges = np.quantile(p, np.linspace(0, 1, 11))
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (p >= lo) & (p <= hi)
        assert abs(p[inside].mean() - y[inside].mean()) < 0.05
    # And the Brier score beats a constant prediction of the base rate.
    assert np.mean((p - y) ** 2) < np.mean((y.mean() - y) ** 2) - 0.02


def test_threshold_reaches_the_target_precision(rng):
    rows, labels, groups, _, _ = simulated(rng, 2000)
    model = fit_fusion(rows, labels, groups=groups, threshold_precision=0.9)
    best: dict[int, tuple[float, bool]] = {}
    for row, label, group in zip(rows, labels, groups, strict=True):
        p = model.probability(row)
        if group not in best or p > best[group][0]:
            best[group] = (p, label)
    confident = [right for p, right in best.values() if p >= model.threshold]
    assert len(confident) >= 20
    assert np.mean(confident) >= 0.9
    assert 0.0 < model.threshold < 1.0


def test_contributions_add_up_to_the_logit():
    model = FusionModel({"visual": 10.0, "visual_gap": 5.0, "spatial": 0.8, "text": 1.2}, -7.0)
    features = {"visual": 0.7, "visual_gap": -0.05, "spatial": 2.0, "text": 1.5}
    parts = model.contributions(features)
    assert set(parts) == {"visual", "spatial", "text"}
    assert parts["visual"] == pytest.approx(10 * 0.7 + 5 * -0.05)
    assert model.intercept + sum(parts.values()) == pytest.approx(model.logit(features))
    assert model.probability(features) == pytest.approx(1 / (1 + math.exp(-model.logit(features))))


def test_round_trip_and_default():
    again = FusionModel.from_dict(DEFAULT_FUSION.to_dict())
    assert again == DEFAULT_FUSION
    assert set(DEFAULT_FUSION.weights) <= set(FEATURES)
    assert DEFAULT_FUSION.weights["visual"] > 0


def test_one_class_cannot_be_fitted():
    with pytest.raises(ValueError, match="both right and wrong"):
        fit_fusion([{"visual": 0.5}, {"visual": 0.6}], [True, True])
