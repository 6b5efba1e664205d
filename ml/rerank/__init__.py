"""Re-ranking with evidence: the visual top-K checked with local features, text on the item,
attribute heads and what the appraiser typed, fused into a calibrated probability.

Public names (``from ml.rerank import ...``): :class:`Reranker`, :class:`RerankConfig`,
:class:`RerankQuery`, :class:`RerankResult`, :class:`CandidateEvidence`,
:class:`CatalogueEntry`, :class:`ReferenceStore`, :class:`FusionModel`, ``DEFAULT_FUSION``,
``fit_fusion``. Submodules: ``spatial`` (features, matching, MAGSAC), ``ocr`` (RapidOCR),
``text`` (fuzzy words), ``attributes`` (heads, soft attributes), ``fusion``, ``store``
(index-time reference evidence), ``stage`` (the orchestration).
"""

from ml.rerank.fusion import DEFAULT_FUSION, FEATURES, FusionModel, fit_fusion
from ml.rerank.stage import DEFAULT_TOP_K, RerankConfig, Reranker, spatial_feature
from ml.rerank.store import ReferenceStore, build_store
from ml.rerank.types import (
    EVIDENCE_KINDS,
    CandidateEvidence,
    CatalogueEntry,
    RerankQuery,
    RerankResult,
)

__all__ = [
    "DEFAULT_FUSION",
    "DEFAULT_TOP_K",
    "EVIDENCE_KINDS",
    "FEATURES",
    "CandidateEvidence",
    "CatalogueEntry",
    "FusionModel",
    "ReferenceStore",
    "RerankConfig",
    "RerankQuery",
    "RerankResult",
    "Reranker",
    "build_store",
    "fit_fusion",
    "spatial_feature",
]
