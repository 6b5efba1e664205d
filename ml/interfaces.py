"""The seams of the retrieval path, as ``typing.Protocol``s: what a detector, an embedder, a
vector index and a re-ranker must offer, whatever implements them.

:class:`ml.yolo.YoloDetector`, :class:`ml.embed.Embedder`, :class:`ml.index.VectorIndex` and
:class:`ml.rerank.stage.Reranker` satisfy them (``tests/ml/test_interfaces.py`` checks it,
statically through mypy and at run time); :mod:`ml.retrieval` and the web app's gateway are
typed against them, so a test double, an exported runtime or another index library can stand
in without touching either.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from ml.rerank.types import CatalogueEntry, LocalFeatures, RerankQuery, RerankResult
from ml.types import Box, SkuScore


@runtime_checkable
class Found(Protocol):
    """One detected item (e.g. :class:`ml.yolo.Detection`)."""

    @property
    def box(self) -> Box:
        """Pixels of the EXIF-oriented image."""
        ...

    @property
    def label(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    @property
    def mask(self) -> np.ndarray | None:
        """``[height, width]`` bool, True on the item (a segmentation model), or None."""
        ...


@runtime_checkable
class ItemDetector(Protocol):
    """Finds the item to match in each photo.

    Attributes:
        name: a version string, stored with each isolation.
    """

    name: str

    def detect_all(
        self, images: Sequence[Image.Image], *, classes: Collection[str] = (),
        alone: bool = False,
    ) -> Sequence[Found | None]:
        """Best detection per image among ``classes`` (any class when empty).

        Args:
            images: ``n`` RGB images, any sizes.
            classes: detector labels to accept.
            alone: no other stage runs meanwhile, so a runtime that was given a share of the
                cores (the worker's overlap) may use all of them for this call.

        Returns:
            ``n`` entries, one per image, None where nothing qualifies.
        """
        ...


@runtime_checkable
class ImageEmbedder(Protocol):
    """Turns item crops into unit vectors whose inner product is their similarity.

    Attributes:
        name: the model version, stable for a given weights file (index versions record it).
        dim: the embedding size.
    """

    name: str
    dim: int

    def embed(self, images: Sequence[Image.Image], *, batch_size: int = 32) -> np.ndarray:
        """``n`` RGB images -> ``[n, dim]`` float32, L2-normalised rows (``[0, dim]`` for none)."""
        ...


@runtime_checkable
class SearchIndex(Protocol):
    """k-nearest-neighbour search by inner product over vectors stored under int64 ids.

    Attributes:
        dim: vector size.
    """

    dim: int

    @property
    def ntotal(self) -> int:
        """Vectors stored."""
        ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored vectors of each query.

        Args:
            queries: ``[q, dim]`` float32, L2-normalised.
            k: results per query.
            allowed_ids: ``[m]`` int64; only these ids may be returned (exactly honoured).

        Returns:
            ``(cosine [q, k] float32, ids [q, k] int64)``, best first; ``-inf`` / ``-1`` where
            fewer than ``k`` results exist.
        """
        ...

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """``ids [n]`` int64 -> ``[n]`` bool: which are stored."""
        ...


class RerankDepth(Protocol):
    """How far down the fused ranking a re-ranker looks (:class:`ml.rerank.stage.RerankConfig`)."""

    @property
    def top_k(self) -> int:
        """Fused candidates re-ranked; the retrieval path fuses at least this many."""
        ...


@runtime_checkable
class EvidenceReranker(Protocol):
    """Re-orders one query's fused visual ranking with stronger evidence than the cosine.

    Attributes:
        config: ``config.top_k`` is how many of the first candidates it re-ranks.
    """

    @property
    def config(self) -> RerankDepth: ...

    def rerank(
        self,
        query: RerankQuery,
        candidates: Sequence[SkuScore],
        *,
        catalogue: Mapping[int, CatalogueEntry],
        sku_references: Mapping[int, Sequence[int]] | None = None,
        ref_to_sku: Mapping[int, int] | None = None,
        query_features: Sequence[LocalFeatures] | None = None,
    ) -> RerankResult:
        """Re-rank ``candidates`` (the fused visual ranking, best first).

        Args:
            query: the ``1..n`` crops that were embedded, their ``[n, dim]`` embeddings, the
                index's hits (``cosines`` / ``reference_ids``, ``[n, k]``, ``-inf`` / ``-1``
                padding) and what the appraiser typed.
            candidates: the visual ranking, score descending (at least ``config.top_k`` of
                them when there are that many).
            catalogue: SKU id -> its text and attributes, for at least the first
                ``config.top_k`` candidates.
            sku_references: SKU id -> all its reference ids (None: those among the hits).
            ref_to_sku: reference id -> SKU id of the hits.
            query_features: per crop, precomputed local features (None: computed here).

        Returns:
            The candidates best first (the re-ranked head, then the rest in visual order),
            the evidence of the re-ranked ones in the same order, whether the first is a
            confident match, and the stage's timings in milliseconds (``rerank_*``).
        """
        ...


__all__ = [
    "EvidenceReranker",
    "Found",
    "ImageEmbedder",
    "ItemDetector",
    "RerankDepth",
    "SearchIndex",
]
