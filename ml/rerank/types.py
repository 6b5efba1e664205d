"""Plain, frozen data of the re-ranking stage: what goes in, what comes out, what is shown.

Coordinates are pixels of the image the evidence was computed on: the query *crop* (what
was embedded) for query points, the reference image as stored for reference points.
Everything converts to JSON with :func:`dataclasses.asdict` (tuples become lists).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ml.types import SkuScore

# Evidence kinds, in the order the fusion model lists its features.
EVIDENCE_KINDS = ("spatial", "text", "attributes", "query_text", "soft_attributes")


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of one image.

    Attributes:
        xy: ``[n, 2]`` float32 keypoint centres, pixels of the image as given.
        size: ``[n]`` float32 keypoint diameters (pixels).
        descriptors: ``[n, d]`` float32 RootSIFT rows (L2 norm 1).
        colours: ``[n, 2]`` float32 CIELAB a*, b* around each keypoint (lighting-robust hue).
        image_size: ``(width, height)`` of the image the points are in.
    """

    xy: np.ndarray
    size: np.ndarray
    descriptors: np.ndarray
    colours: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.xy.shape[0])


@dataclass(frozen=True)
class RegionBox:
    """Axis-aligned region ``[x0, y0, x1, y1]`` in pixels, with the inliers inside it."""

    x0: float
    y0: float
    x1: float
    y1: float
    inliers: int


@dataclass(frozen=True)
class SpatialEvidence:
    """Geometric verification of one (query photo, reference image) pair.

    ``query_points[i]`` and ``reference_points[i]`` are one inlier correspondence (at most
    :data:`ml.rerank.spatial.MAX_DRAWN_MATCHES` of them kept, for drawing).
    """

    query_index: int
    reference_id: int
    matches: int  # ratio-test correspondences before geometry
    inliers: int  # consistent with the fitted homography
    colour_inliers: float  # inliers whose local colour agrees (soft count)
    weight: float  # reference weight (the catalogue image counts more)
    score: float  # the feature fed to fusion
    query_size: tuple[int, int]
    reference_size: tuple[int, int]
    query_points: list[tuple[float, float]] = field(default_factory=list)
    reference_points: list[tuple[float, float]] = field(default_factory=list)
    query_parts: list[RegionBox] = field(default_factory=list)
    reference_parts: list[RegionBox] = field(default_factory=list)


@dataclass(frozen=True)
class OcrWord:
    """One word read on the query crop: text, recogniser confidence, and its line's box."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the text line
    query_index: int = 0


@dataclass(frozen=True)
class WordMatch:
    """A read (or typed) word that matched the candidate's catalogue text."""

    word: str  # as read or typed
    matched: str  # the catalogue word it matched
    source: str  # "name", "brand", "series", "description", "attributes", "reference_text"
    similarity: float  # rapidfuzz ratio in [0, 100]
    weight: float  # idf weight of the matched catalogue word
    box: tuple[float, float, float, float] | None = None  # the OCR line, for highlighting
    query_index: int = 0


@dataclass(frozen=True)
class TextEvidence:
    matches: list[WordMatch]
    score: float


@dataclass(frozen=True)
class AttributeMatch:
    name: str
    expected: str  # the SKU's value
    predicted: str  # the model's (or the appraiser's) value
    probability: float  # of ``expected``, by the model; 1.0 for a typed value that agrees
    agrees: bool


@dataclass(frozen=True)
class AttributeEvidence:
    matches: list[AttributeMatch]
    score: float


@dataclass(frozen=True)
class CandidateEvidence:
    """Everything the stage found for one candidate SKU.

    ``features`` are the fusion model's inputs; ``contributions`` their weighted parts of
    the logit (kind -> weight * feature, ``"visual"`` included), which is what the page
    shows as "how much each kind of evidence contributed".
    """

    sku_id: int
    visual_rank: int  # 1-based rank before re-ranking
    cosine: float
    probability: float  # fused, in [0, 1]
    features: dict[str, float]
    contributions: dict[str, float]
    spatial: SpatialEvidence | None = None
    text: TextEvidence | None = None
    attributes: AttributeEvidence | None = None
    query_text: TextEvidence | None = None
    soft_attributes: AttributeEvidence | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


@dataclass(frozen=True)
class CatalogueEntry:
    """One SKU's text and attributes as the stage compares them (no database rows)."""

    sku_id: int
    name: str = ""
    category: str = ""
    brand: str = ""
    series: str = ""
    description: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)

    def value(self, attribute: str) -> str:
        """The SKU's value of an attribute by name ("category", "brand", "colour"...)."""
        if attribute in ("category", "brand", "series", "name"):
            return str(getattr(self, attribute) or "")
        return str(self.attributes.get(attribute, "") or "")


@dataclass(frozen=True)
class RerankQuery:
    """One query as the stage sees it.

    Attributes:
        crops: the 1..N isolated query images that were embedded.
        embeddings: ``[n_photos, dim]`` their embeddings (for attribute heads), or None.
        cosines, reference_ids: ``[n_photos, k]`` the index's hits (``-1`` / ``-inf`` padding).
        query_text: free text typed by the appraiser ("red leather Harbour tote").
        soft_attributes: attribute -> value given by the appraiser, evidence, not a filter.
    """

    crops: Sequence[Image.Image]
    cosines: np.ndarray
    reference_ids: np.ndarray
    embeddings: np.ndarray | None = None
    query_text: str = ""
    soft_attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RerankResult:
    """Candidates best first after re-ranking (``score`` = fused probability), their evidence
    in the same order, whether the first is a confident match, and stage timings."""

    candidates: list[SkuScore]
    evidence: list[CandidateEvidence]
    confident: bool
    timings_ms: dict[str, float]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 4)
    return value


__all__ = [
    "EVIDENCE_KINDS",
    "AttributeEvidence",
    "AttributeMatch",
    "CandidateEvidence",
    "CatalogueEntry",
    "LocalFeatures",
    "OcrWord",
    "RegionBox",
    "RerankQuery",
    "RerankResult",
    "SpatialEvidence",
    "TextEvidence",
    "WordMatch",
]
