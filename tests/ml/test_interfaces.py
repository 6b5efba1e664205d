"""The Protocols of ml.interfaces: the real implementations satisfy them and the retrieval path
works through them alone.

The assignments to Protocol-typed names are checked by mypy (``make lint`` runs it on this
file); the ``isinstance`` checks catch a missing member at run time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pytest
from PIL import Image

from ml.embed import Embedder
from ml.interfaces import EvidenceReranker, Found, ImageEmbedder, ItemDetector, SearchIndex
from ml.model import build_model
from ml.rerank.stage import RerankConfig, Reranker
from ml.rerank.types import CatalogueEntry, LocalFeatures, RerankQuery, RerankResult
from ml.retrieval import Isolator, Query, RerankStep, Retriever
from ml.types import Box, SkuScore
from ml.yolo import Detection, YoloDetector

from .conftest import SHARED, unit_vectors

TFLITE = SHARED / "weights" / "yolov8n_int8.tflite"


def test_vector_index_is_a_search_index() -> None:
    from ml.index import VectorIndex

    index: SearchIndex = VectorIndex.build(
        np.arange(5, dtype=np.int64), unit_vectors(np.random.default_rng(0), 5, 8)
    )
    assert isinstance(index, SearchIndex)
    scores, ids = index.search(unit_vectors(np.random.default_rng(1), 2, 8), 3)
    assert scores.shape == ids.shape == (2, 3)
    assert index.contains(np.array([4, 5])).tolist() == [True, False]


def test_embedder_is_an_image_embedder() -> None:
    model = build_model("efficientnet_lite0", embedding_dim=16, pretrained=False)
    embedder: ImageEmbedder = Embedder(model, name="t", device="cpu")
    assert isinstance(embedder, ImageEmbedder)
    out = embedder.embed([Image.new("RGB", (64, 48), (200, 10, 10))])
    assert out.shape == (1, embedder.dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_yolo_detector_is_an_item_detector() -> None:
    if not TFLITE.exists():
        pytest.skip(f"offline COCO detector not found at {TFLITE}")
    detector: ItemDetector = YoloDetector(TFLITE, image_size=320)
    assert isinstance(detector, ItemDetector)
    found: Found = Detection(Box(0, 0, 1, 1), "handbag", 0.9)
    assert isinstance(found, Found)


class _ColourEmbedder:
    """Not an Embedder: the mean colour as a 3-d unit vector."""

    name = "mean-colour"
    dim = 3

    def embed(self, images: Sequence[Image.Image], *, batch_size: int = 32) -> np.ndarray:
        rows = np.array([np.asarray(im, np.float32).mean(axis=(0, 1)) + 1e-3 for im in images])
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class _DictIndex:
    """Not a VectorIndex: exact search over a dict, the protocol's minimum."""

    def __init__(self, vectors: dict[int, np.ndarray]) -> None:
        self.dim = 3
        self._ids = np.array(sorted(vectors), np.int64)
        self._vectors = np.stack([vectors[i] for i in self._ids])

    @property
    def ntotal(self) -> int:
        return len(self._ids)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return np.isin(ids, self._ids)

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        everything = np.ones(len(self._ids), bool)
        keep = everything if allowed_ids is None else np.isin(self._ids, allowed_ids)
        ids, vectors = self._ids[keep], self._vectors[keep]
        sims = queries @ vectors.T
        order = np.argsort(-sims, axis=1)[:, :k]
        scores = np.full((len(queries), k), -np.inf, np.float32)
        labels = np.full((len(queries), k), -1, np.int64)
        n = order.shape[1]
        scores[:, :n] = np.take_along_axis(sims, order, axis=1)
        labels[:, :n] = ids[order]
        return scores, labels


class _NoDetector:
    name = "none"

    def detect_all(
        self, images: Sequence[Image.Image], *, classes: Collection[str] = (),
        alone: bool = False,
    ) -> Sequence[Found | None]:
        return [None] * len(images)


def test_retriever_runs_on_any_implementation_of_the_protocols() -> None:
    """Red photos find the red reference's SKU, blue the blue one's, through stand-ins."""
    red, blue = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    index = _DictIndex({10: red, 20: blue})
    assert isinstance(index, SearchIndex)
    retriever = Retriever(
        embedder=_ColourEmbedder(),
        index=index,
        sku_of=lambda refs: {r: {10: 1, 20: 2}[r] for r in refs},
        isolator=Isolator(_NoDetector(), segmentation="none"),
    )
    photos = {c: Image.new("RGB", (32, 32), c) for c in ((250, 5, 5), (5, 5, 250))}
    results = retriever.retrieve([Query(images=[p]) for p in photos.values()], top_k=2)
    assert [[s.sku_id for s in r.candidates] for r in results] == [[1, 2], [2, 1]]


def test_reranker_is_an_evidence_reranker() -> None:
    reranker: EvidenceReranker = Reranker(RerankConfig(top_k=3))
    assert isinstance(reranker, EvidenceReranker)
    assert reranker.config.top_k == 3


@dataclass(frozen=True)
class _Depth:
    top_k: int


class _TypedNameReranker:
    """Not a Reranker: the candidate whose catalogue name the appraiser typed goes first."""

    def __init__(self, top_k: int) -> None:
        self.config = _Depth(top_k)
        self.seen: list[tuple[list[int], int]] = []

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
        self.seen.append(([c.sku_id for c in candidates], len(query.crops)))
        head = candidates[: self.config.top_k]
        typed = [c for c in head if catalogue[c.sku_id].name == query.query_text]
        ordered = typed + [c for c in candidates if c not in typed]
        return RerankResult(
            [replace(c, score=1.0 - r / 10) for r, c in enumerate(ordered)],
            evidence=[],
            confident=bool(typed),
            timings_ms={"rerank_typed": 1.5},
        )


def test_retriever_reranks_with_any_implementation_of_the_protocol() -> None:
    """A reddish-blue photo with "blue" typed: the stand-in puts the blue SKU first; the
    retriever fuses as deep as the stand-in re-ranks (not only the one SKU shown), asks the
    catalogue for that head only, and passes on the stand-in's ranking, flag and timings."""
    red, blue, green = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]), np.array(
        [0.0, 1.0, 0.0]
    )
    index = _DictIndex({10: red, 20: blue, 30: green})
    names = {1: "red", 2: "blue", 3: "green"}
    asked: list[list[int]] = []

    def catalogue(
        skus: Sequence[int],
    ) -> tuple[Mapping[int, CatalogueEntry], Mapping[int, Sequence[int]]]:
        asked.append(list(skus))
        return {s: CatalogueEntry(s, name=names[s]) for s in skus}, {s: [s * 10] for s in skus}

    reranker = _TypedNameReranker(top_k=2)
    assert isinstance(reranker, EvidenceReranker)
    retriever = Retriever(
        embedder=_ColourEmbedder(),
        index=index,
        sku_of=lambda refs: {r: r // 10 for r in refs},
        isolator=Isolator(_NoDetector(), segmentation="none"),
        rerank=RerankStep(reranker, catalogue),
    )
    photo = Image.new("RGB", (32, 32), (250, 5, 40))  # visually red, then blue, then green
    typed, plain = retriever.retrieve(
        [Query(images=[photo], query_text="blue"), Query(images=[photo])], top_k=1
    )
    assert [s.sku_id for s in typed.candidates] == [2] and typed.confident is True
    assert [s.sku_id for s in plain.candidates] == [1] and plain.confident is False
    assert typed.timings_ms["rerank_typed"] == 1.5
    # One SKU shown, but the stand-in got the two it re-ranks, in visual order, and the crop.
    assert reranker.seen == [([1, 2], 1), ([1, 2], 1)]
    assert asked == [[1, 2], [1, 2]]
