"""Threshold calibration against a brute-force scan of every candidate threshold."""

from __future__ import annotations

import numpy as np
import pytest

from ml.calibrate import calibrate_threshold


def _brute_force(scores, correct, target, min_support):  # type: ignore[no-untyped-def]
    best = None
    for t in sorted(set(scores.tolist())):
        kept = scores >= t
        n = int(kept.sum())
        if n >= min_support and correct[kept].mean() >= target:
            return t, float(correct[kept].mean()), n
    return best


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    scores = np.round(rng.uniform(0.5, 1.0, n), 2)  # rounding makes ties
    correct = rng.uniform(0, 1, n) < (scores - 0.4)  # higher scores are right more often
    target = float(rng.choice([0.6, 0.8, 0.9, 0.95]))
    fit = calibrate_threshold(scores, correct, target_precision=target, min_support=5)
    expected = _brute_force(scores, correct, target, 5)
    if expected is None:
        assert fit is None
    else:
        assert fit is not None
        assert (fit.threshold, fit.support) == (expected[0], expected[2])
        assert fit.precision == pytest.approx(expected[1])
        assert fit.coverage == pytest.approx(expected[2] / n)


def test_none_without_enough_support() -> None:
    assert calibrate_threshold(np.array([0.9, 0.8]), np.array([True, True]),
                               target_precision=0.9, min_support=3) is None


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        calibrate_threshold(np.zeros(3), np.zeros(2, bool), target_precision=0.9)
