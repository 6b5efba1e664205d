"""The gate's rule, from figures alone (pure, so it is easy to test and to read).

- held-out Recall@1 must gain more than GATE_MIN_GAIN (strictly better by default);
- every other figure may not get worse: a drop up to GATE_TOLERANCE always passes; a larger
  one, up to GATE_MAX_DROP, passes only when it is not significant: over the queries where the
  two models differ, the candidate's losses do not outnumber its wins beyond chance (one-sided
  exact sign test at GATE_ALPHA). On a few dozen held-out requests one query is a point or
  two; a flat tolerance alone would refuse good models on that noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# (label, figure key, rule)
SPECS = [
    ("held-out Recall@1", "holdout_r1", "gain"),
    ("held-out Top-4", "holdout_r4", "no_worse"),
    ("held-out MAP@R", "holdout_map_r", "no_worse"),
    # New SKUs have only catalogue images: matching against those must not get worse.
    ("held-out R@1, catalogue images only", "holdout_cold_r1", "no_worse"),
    ("replay Top-1", "replay_top1", "no_worse"),
    ("replay Top-4", "replay_top4", "no_worse"),
]


@dataclass(frozen=True)
class Check:
    name: str
    live: float
    candidate: float
    rule: str  # "gain": must exceed live by more than threshold; "no_worse": see the module
    threshold: float
    ok: bool
    wins: int | None = None  # queries where only the candidate does better
    losses: int | None = None  # queries where only the live model does better
    p_value: float | None = None  # chance of that many losses or more if equal

    @property
    def delta(self) -> float:
        return self.candidate - self.live


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(losses or more of wins + losses | no difference)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(losses, n + 1)) / 2**n


def _paired(live: np.ndarray, candidate: np.ndarray) -> tuple[int, int, float]:
    live, candidate = np.asarray(live, dtype=float), np.asarray(candidate, dtype=float)
    wins = int((candidate > live + 1e-12).sum())
    losses = int((candidate < live - 1e-12).sum())
    return wins, losses, sign_test(wins, losses)


def gate_decide(
    live: dict[str, float],
    candidate: dict[str, float],
    *,
    holdout_queries: int,
    tolerance: float,
    min_gain: float,
    min_holdout: int,
    max_drop: float | None = None,
    alpha: float = 0.05,
    paired: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[bool, list[str], list[Check]]:
    """(passed, reasons, checks). `paired` holds per-query outcomes (live, candidate) by
    figure key; without them, or with `max_drop` None, no drop beyond `tolerance` passes."""
    checks = []
    for name, key, rule in SPECS:
        a, b = live.get(key, 0.0), candidate.get(key, 0.0)
        wins = losses = p = None
        if key in (paired or {}):
            wins, losses, p = _paired(*paired[key])  # type: ignore[index]
        if rule == "gain":
            threshold, ok = min_gain, b - a > min_gain
        else:
            threshold, drop = tolerance, a - b
            ok = drop <= tolerance + 1e-12 or (
                max_drop is not None and drop <= max_drop + 1e-12 and p is not None
                and p >= alpha
            )
        checks.append(Check(name, a, b, rule, threshold, ok, wins, losses, p))
    reasons = []
    if holdout_queries < min_holdout:
        reasons.append(f"only {holdout_queries} held-out photos (at least {min_holdout} needed)")
    for check in checks:
        if check.ok:
            continue
        if check.rule == "gain":
            how = f"it must gain more than {check.threshold:+.3f}"
        elif check.p_value is not None and max_drop is not None and -check.delta <= max_drop:
            how = (f"worse on {check.losses} queries, better on {check.wins} "
                   f"(p = {check.p_value:.3f} < {alpha})")
        else:
            cap = max(check.threshold, max_drop or 0.0)
            how = f"it may drop at most {cap:.3f}"
        reasons.append(f"{check.name} {check.live:.3f} -> {check.candidate:.3f} "
                       f"({check.delta:+.3f}); {how}")
    return not reasons, reasons, checks
