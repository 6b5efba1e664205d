"""The names settings may choose among, from ml's own lists (no model code is imported)."""

from __future__ import annotations

from ml.backends import DETECTOR_BACKENDS, EMBED_BACKENDS
from ml.fuse import DEFAULT_STRATEGY, STRATEGIES
from ml.rerank.types import EVIDENCE_KINDS

FUSION_STRATEGIES = STRATEGIES
DEFAULT_FUSION_STRATEGY = DEFAULT_STRATEGY

__all__ = [
    "DEFAULT_FUSION_STRATEGY",
    "DETECTOR_BACKENDS",
    "EMBED_BACKENDS",
    "EVIDENCE_KINDS",
    "FUSION_STRATEGIES",
]
