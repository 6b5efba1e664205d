"""The one place webapp talks to `ml`: plain data in and out, model and index cached per process.

A worker process loads the embedder once and reloads the index only when the active
IndexVersion row changes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from ml.embed import Embedder, configure_threads, load_embedder
from ml.evaluate import query_outcomes
from ml.index import VectorIndex
from ml.retrieval import Isolator, Query, RetrievalConfig, Retriever
from ml.types import Box, Isolation, QueryOutcome, SkuScore
from ml.yolo import YoloDetector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchResult:
    candidates: list[SkuScore]
    timings_ms: dict[str, float]
    model_version: str
    index_version: str
    isolations: list[Isolation]


class IndexUnavailable(RuntimeError):
    """No index has been built yet, or its files are missing."""


def default_model_ref() -> str:
    """The model to use when no index exists yet (a backbone name or checkpoint path)."""
    return settings.EMBEDDING_MODEL


def stage_threads() -> dict[str, int]:
    """CPU threads of the detector's and the embedding network's runtimes.

    When the worker overlaps the two stages (SKULENS_OVERLAP_PHOTOS) each gets half the cores,
    so together they never ask for more threads than there are cores."""
    total = settings.TORCH_THREADS or os.cpu_count() or 1
    if settings.OVERLAP_PHOTOS and total >= 2:
        return {"detect": total // 2, "embed": total - total // 2}
    return {"detect": total, "embed": total}


@lru_cache(maxsize=3)
def _embedder(model_ref: str) -> Embedder:
    configure_threads(settings.TORCH_THREADS or None)
    started = time.perf_counter()
    model = load_embedder(
        model_ref, device=settings.TORCH_DEVICE, backend=settings.EMBED_BACKEND,
        export_dir=settings.EXPORT_DIR, threads=stage_threads()["embed"],
    )
    logger.info("loaded embedder %s (%s) in %.1f s", model.name, model.backend,
                time.perf_counter() - started)
    return model


def embedder(model_ref: str | None = None) -> Embedder:
    """The embedder for `model_ref`, or for the active index (the two always travel together)."""
    if model_ref is None:
        from webapp.learning.selectors import active_index_version

        version = active_index_version()
        model_ref = version.model_ref if version and version.model_ref else default_model_ref()
    return _embedder(model_ref)


@cache
def detector() -> YoloDetector | None:
    """The item detector, or None (full frame) when it is disabled or cannot be loaded."""
    weights = settings.DETECTOR_WEIGHTS
    if not weights:
        return None
    configure_threads(settings.TORCH_THREADS or None)
    try:
        import torch

        return YoloDetector(
            weights,
            image_size=settings.DETECTOR_IMAGE_SIZE,
            min_confidence=settings.DETECTOR_MIN_CONFIDENCE,
            device="cuda" if torch.cuda.is_available() else "cpu",
            backend=settings.DETECTOR_BACKEND,
            threads=stage_threads()["detect"],
        )
    except Exception as exc:  # noqa: BLE001 - missing file, or no internet to download it
        logger.warning("detector %s unavailable, using the full frame: %s", weights, exc)
        return None


def isolator() -> Isolator:
    """Subject isolation as configured: the detector (if any) and the segmentation."""
    return Isolator(detector(), segmentation=settings.SEGMENTATION)


def retrieval_config() -> RetrievalConfig:
    """The fusion strategy and search depth every ranking in the app uses."""
    return RetrievalConfig(strategy=settings.FUSION_STRATEGY, search_depth=settings.SEARCH_DEPTH)


def isolate_items(
    images: Sequence[Image.Image],
    *,
    corrected_boxes: Sequence[Box | None],
    classes: Sequence[str],
    timings: dict[str, float],
) -> tuple[list[Image.Image], list[Isolation]]:
    """Detect (unless the appraiser drew the box), segment, and crop on a neutral background."""
    return isolator().isolate(
        images, corrected_boxes=corrected_boxes, classes=classes, timings=timings
    )


def embedding_version(model_ref: str | None = None) -> str:
    """Names everything that shapes a vector: the network and how items are isolated.

    Reference images embedded under another version are re-embedded before indexing."""
    return f"{embedder(model_ref).name}|{isolator().name}"


def embed_items(
    images: Sequence[Image.Image], *, classes: Sequence[str], model_ref: str | None = None
) -> np.ndarray:
    """Isolate each image's item exactly as queries are isolated, then embed: [n, dim]."""
    crops, _ = isolate_items(
        images, corrected_boxes=[None] * len(images), classes=classes, timings={}
    )
    return embedder(model_ref).embed(crops)


def embed_crops(crops: Sequence[Image.Image], *, model_ref: str | None = None) -> np.ndarray:
    """Embed item crops that were isolated already (e.g. rebuilt from a match's stored box and
    mask): [n, dim]."""
    return embedder(model_ref).embed(crops)


def gallery_outcomes(
    gallery_vectors: np.ndarray,
    gallery_labels: np.ndarray,
    query_vectors: np.ndarray,
    query_labels: np.ndarray,
    groups: Sequence[Sequence[int]],
    *,
    allowed: Sequence[np.ndarray | None],
    top_k: int,
) -> list[QueryOutcome]:
    """Labelled queries ranked against an in-memory gallery exactly as a match ranks them
    (same depth rule and fusion): the gate's per-query figures."""
    return query_outcomes(
        gallery_vectors, gallery_labels, query_vectors, query_labels, groups,
        allowed=allowed, config=retrieval_config(), top_k=top_k,
    )


def index_path(name: str) -> Path:
    return settings.INDEX_DIR / name


class _ActiveIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._name: str | None = None
        self._index: VectorIndex | None = None
        self._model_ref = ""

    def get(self) -> tuple[str, VectorIndex, str]:
        """(index version name, index, model ref): a match uses all three together."""
        from webapp.learning.selectors import active_index_version

        version = active_index_version()
        if version is None:
            raise IndexUnavailable("No search index has been built yet.")
        with self._lock:
            if self._name != version.name or self._index is None:
                started = time.perf_counter()
                try:
                    index, _meta = VectorIndex.load(index_path(version.name))
                except FileNotFoundError as exc:
                    raise IndexUnavailable(f"Index files for {version.name} are missing") from exc
                if index.ntotal != version.vector_count:
                    raise IndexUnavailable(
                        f"Index {version.name} holds {index.ntotal} vectors but the database "
                        f"recorded {version.vector_count}: run manage.py build_index --full"
                    )
                index.use_device("auto")  # a GPU replica when faiss-gpu sees one
                self._name, self._index = version.name, index
                self._model_ref = version.model_ref or default_model_ref()
                logger.info(
                    "loaded index %s (%d vectors) in %.2f s",
                    version.name, index.ntotal, time.perf_counter() - started,
                )
            return self._name, self._index, self._model_ref

    def forget(self) -> None:
        with self._lock:
            self._name, self._index = None, None


active_index = _ActiveIndex()


def warm_up() -> None:
    """Load the models and index now, so the first task does not pay for it."""
    embedder()
    detector()
    try:
        active_index.get()
    except IndexUnavailable as exc:
        logger.warning("warm-up: %s", exc)


MatchQuery = Query  # one request's photos and constraints, as the model sees them


def active_sku_lookup(reference_ids: Collection[int]) -> dict[int, int]:
    """Reference id -> SKU id for references of active SKUs: a SKU deactivated since the last
    index sync must not be offered."""
    from webapp.catalog.models import SKUImage

    return dict(
        SKUImage.objects.filter(id__in=list(reference_ids), sku__is_active=True)
        .values_list("id", "sku_id")
    )


def _live_retriever() -> tuple[str, str, Retriever]:
    index_name, index, model_ref = active_index.get()
    retriever = Retriever(
        embedder=embedder(model_ref), index=index, sku_of=active_sku_lookup,
        isolator=isolator(), config=retrieval_config(), overlap_photos=settings.OVERLAP_PHOTOS,
    )
    return index_name, model_ref, retriever


def match(
    images: Sequence[Image.Image],
    *,
    allowed_reference_ids: np.ndarray | None,
    top_k: int,
    corrected_boxes: Sequence[Box | None] | None = None,
    detection_classes: Sequence[str] = (),
) -> MatchResult:
    query = Query(images, allowed_reference_ids, corrected_boxes, detection_classes)
    return match_batch([query], top_k=top_k)[0]


def match_batch(queries: Sequence[Query], *, top_k: int) -> list[MatchResult]:
    """Several requests through the model together (`ml.retrieval.Retriever`): one detector
    call per set of target classes and one embedding pass for every photo, then a search and a
    fusion per request. A request's stage timings are its share of the batch's."""
    if not queries:
        return []
    index_name, model_ref, retriever = _live_retriever()
    version = embedding_version(model_ref)
    return [
        MatchResult(found.candidates, found.timings_ms, version, index_name, found.isolations)
        for found in retriever.retrieve(queries, top_k=top_k)
    ]


@dataclass(frozen=True)
class LiveRankings:
    """Rankings of labelled photos by the live model and index (`rank_live`)."""

    model_version: str
    index_version: str
    index_size: int
    rankings: dict[str, list[list[SkuScore]]]  # variant -> per query, SKUs best first


def rank_live(
    queries: Sequence[Sequence[Image.Image]],
    *,
    variants: dict[str, np.ndarray | None],
    classes: Sequence[str] = (),
    top_k: int,
    batch_size: int = 32,
) -> LiveRankings:
    """Rank each query (1..N photos) exactly as a match does, once per variant of allowed
    reference ids (e.g. "cold": catalogue images only, "warm": everything), embedding once."""
    index_name, model_ref, retriever = _live_retriever()
    vectors: list[np.ndarray] = []
    for start in range(0, len(queries), batch_size):
        chunk = [Query(photos, detection_classes=classes) for photos in
                 queries[start : start + batch_size]]
        vectors.extend(retriever.embed_queries(chunk)[0])
    rankings = {
        name: retriever.rank(vectors, allowed=[allowed] * len(vectors), top_k=top_k)
        for name, allowed in variants.items()
    }
    return LiveRankings(embedding_version(model_ref), index_name, retriever.index.ntotal,
                        rankings)


def indexed_reference_ids() -> np.ndarray:
    """[n] ids of the references in the active index."""
    return active_index.get()[1].ids()
