"""One retrieval path: isolate -> embed -> search -> fuse (-> re-rank with evidence).

Serving (the web app's worker), the promotion gate, the live measurement of the learning-loop
simulation and ``python -m ml evaluate`` all rank through :func:`rank_vectors`, with the same
search depth rule and the same fusion strategy, so the gate measures what serving does. Callers
that start from photos use :class:`Retriever`; callers that already hold the item crops (the
gate reads the isolation stored with each past match) enter at the embedding.

With a :class:`RerankStep` and each query's crops (:class:`EvidenceInputs`), the fused top-K
goes through the evidence stage (:mod:`ml.rerank`) inside the same function
(:func:`rank_with_evidence`), so whoever passes them ranks exactly as serving does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from ml.fuse import DEFAULT_STRATEGY, STRATEGIES, rank_skus
from ml.interfaces import Found, ImageEmbedder, ItemDetector, SearchIndex
from ml.rerank.stage import Reranker
from ml.rerank.types import CandidateEvidence, CatalogueEntry, LocalFeatures, RerankQuery
from ml.segment import grabcut_mask, grabcut_version, isolate
from ml.types import Box, Isolation, SkuScore

# References retrieved per photo before fusion, whatever the number of candidates shown: a
# ranking cut at 4 (the gate) is then a prefix of the same ranking cut at 8 (the page). It is
# deep enough for 8 SKUs with ~20 appraisal images each to surface, and cheap on a flat or IVF
# index (docs/benchmarks.md, "Index at 1M vectors").
DEFAULT_SEARCH_DEPTH = 200
SEGMENTATIONS = ("grabcut", "none")

SkuLookup = Callable[[Collection[int]], Mapping[int, int]]
# Candidate SKU ids -> (their text and attributes, their reference ids): what the evidence
# stage compares (the web app reads the database; evaluation the gallery CSV).
CatalogueLookup = Callable[
    [Sequence[int]], tuple[Mapping[int, CatalogueEntry], Mapping[int, Sequence[int]]]
]


@dataclass(frozen=True)
class RetrievalConfig:
    """How photos become one ranking; shared by every caller."""

    strategy: str = DEFAULT_STRATEGY
    search_depth: int = DEFAULT_SEARCH_DEPTH

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"fusion strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.search_depth < 1:
            raise ValueError("search_depth must be at least 1")

    def depth(self, available: int) -> int:
        """References to retrieve per photo when ``available`` pass the filter."""
        return max(1, min(self.search_depth, available))


DEFAULT_CONFIG = RetrievalConfig()


@dataclass(frozen=True)
class Query:
    """One item: its photos and what constrains the search."""

    images: Sequence[Image.Image]
    allowed_ids: np.ndarray | None = None  # [m] reference ids the filters allow; None = all
    corrected_boxes: Sequence[Box | None] | None = None  # per photo, the appraiser's box
    detection_classes: Sequence[str] = ()
    # Typed by the appraiser: evidence for re-ranking, never a filter.
    query_text: str = ""
    soft_attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RerankStep:
    """The evidence stage inside the retrieval path: the stage and where it reads the
    candidates' catalogue text and reference ids."""

    reranker: Reranker
    catalogue: CatalogueLookup


@dataclass(frozen=True)
class EvidenceInputs:
    """What the evidence stage needs of one query beyond its vectors: the isolated crops that
    were embedded, what was typed, and (benchmarks) precomputed per-crop features."""

    crops: Sequence[Image.Image]
    query_text: str = ""
    soft_attributes: Mapping[str, str] = field(default_factory=dict)
    query_features: Sequence[LocalFeatures] | None = None


@dataclass(frozen=True)
class Ranked:
    """One query's ranking; with re-ranking also the evidence of its first candidates (in
    ranked order), the stage's confident flag and the visual ranking it started from."""

    candidates: list[SkuScore]
    evidence: list[CandidateEvidence] = field(default_factory=list)
    confident: bool | None = None
    visual: list[SkuScore] = field(default_factory=list)


@dataclass(frozen=True)
class Retrieval:
    """One query's result: candidates best first, how each photo was isolated, stage timings."""

    candidates: list[SkuScore]
    isolations: list[Isolation]
    timings_ms: dict[str, float] = field(default_factory=dict)
    evidence: list[CandidateEvidence] = field(default_factory=list)  # with re-ranking
    confident: bool | None = None


ItemT = TypeVar("ItemT")
MidT = TypeVar("MidT")
OutT = TypeVar("OutT")


def overlapped(
    items: Iterable[ItemT], first: Callable[[ItemT], MidT], second: Callable[[MidT], OutT]
) -> list[OutT]:
    """``[second(first(item)) for item in items]``, with ``first`` of the next item running in
    a background thread while ``second`` of the current one runs in the caller's.

    Two stages in flight at most: with each stage's runtime given half the cores (the worker
    splits them, ``ml.backends``), they share the machine without oversubscribing it. The
    native runtimes (LiteRT, OpenVINO, ONNX Runtime, OpenCV, torch) release the GIL while they
    compute, so the two stages really run at once.
    """
    items = list(items)
    if len(items) < 2:
        return [second(first(item)) for item in items]
    out: list[OutT] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="isolate") as pool:
        pending = pool.submit(first, items[0])
        for nxt in items[1:]:
            ready = pending.result()
            pending = pool.submit(first, nxt)
            out.append(second(ready))
        out.append(second(pending.result()))
    return out


def lookup_from(mapping: Mapping[int, int]) -> SkuLookup:
    """A :data:`SkuLookup` over a fixed reference id -> SKU id mapping."""
    return lambda ids: {i: mapping[i] for i in ids if i in mapping}


class Isolator:
    """Subject isolation: detect the item (unless the appraiser drew its box), segment it
    inside the box, and crop it onto a neutral background; the full frame when nothing is found.
    """

    def __init__(self, detector: ItemDetector | None = None, *, segmentation: str = "grabcut"):
        if segmentation not in SEGMENTATIONS:
            raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {segmentation!r}")
        self.detector = detector
        self.segmentation = segmentation

    @property
    def name(self) -> str:
        """Everything about isolation that shapes a vector."""
        found = self.detector.name if self.detector is not None else "full-frame"
        # GrabCut's own settings too: changing them changes every mask (issue 15).
        segmentation = grabcut_version() if self.segmentation == "grabcut" else self.segmentation
        return f"{found}|{segmentation}"

    def isolate(
        self,
        images: Sequence[Image.Image],
        *,
        corrected_boxes: Sequence[Box | None] | None = None,
        classes: Sequence[str] = (),
        timings: dict[str, float] | None = None,
    ) -> tuple[list[Image.Image], list[Isolation]]:
        """Crops and isolations, one per image; ``timings`` gets ``detect`` and ``segment`` ms."""
        timings = {} if timings is None else timings
        boxes = list(corrected_boxes) if corrected_boxes is not None else [None] * len(images)
        if len(boxes) != len(images):
            raise ValueError("one corrected box (or None) per image")
        started = time.perf_counter()
        to_detect = [i for i, box in enumerate(boxes) if box is None]
        detections: dict[int, Found | None] = {}
        if to_detect and self.detector is not None:
            found = self.detector.detect_all([images[i] for i in to_detect], classes=classes)
            detections = dict(zip(to_detect, found, strict=True))
        timings["detect"] = (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        crops: list[Image.Image] = []
        isolations: list[Isolation] = []
        for i, image in enumerate(images):
            corrected, detection = boxes[i], detections.get(i)
            if corrected is not None:
                box, source, label, confidence = corrected, "corrected", "", None
            elif detection is not None:
                box, source = detection.box, "detector"
                label, confidence = detection.label, detection.confidence
                outline = detection.mask
                if outline is not None:  # a segmentation model outlined the item already
                    isolations.append(Isolation(box, source, label, confidence, outline))
                    crops.append(isolate(image, box, outline))
                    continue
            else:
                full = Box(0.0, 0.0, float(image.width), float(image.height))
                isolations.append(Isolation(full, "full_frame"))
                crops.append(image)
                continue
            mask = grabcut_mask(image, box) if self.segmentation == "grabcut" else None
            isolations.append(Isolation(box, source, label, confidence, mask))
            crops.append(isolate(image, box, mask))
        timings["segment"] = (time.perf_counter() - started) * 1000
        return crops, isolations


def rank_vectors(
    vectors_per_query: Sequence[np.ndarray],
    index: SearchIndex,
    sku_of: SkuLookup,
    *,
    allowed: Sequence[np.ndarray | None] | None = None,
    top_k: int,
    config: RetrievalConfig = DEFAULT_CONFIG,
    timings: Sequence[dict[str, float]] | None = None,
    rerank: RerankStep | None = None,
    inputs: Sequence[EvidenceInputs] | None = None,
) -> list[list[SkuScore]]:
    """Search and fuse (and re-rank): the one place a query's photo vectors become a SKU
    ranking. The candidates of :func:`rank_with_evidence`, which documents the arguments."""
    ranked = rank_with_evidence(
        vectors_per_query, index, sku_of, allowed=allowed, top_k=top_k, config=config,
        timings=timings, rerank=rerank, inputs=inputs,
    )
    return [r.candidates for r in ranked]


def rank_with_evidence(
    vectors_per_query: Sequence[np.ndarray],
    index: SearchIndex,
    sku_of: SkuLookup,
    *,
    allowed: Sequence[np.ndarray | None] | None = None,
    top_k: int,
    config: RetrievalConfig = DEFAULT_CONFIG,
    timings: Sequence[dict[str, float]] | None = None,
    rerank: RerankStep | None = None,
    inputs: Sequence[EvidenceInputs] | None = None,
) -> list[Ranked]:
    """Search, fuse and, given ``rerank`` and ``inputs``, re-rank with evidence.

    Args:
        vectors_per_query: per query, ``[n_photos, dim]`` L2-normalised photo embeddings.
        index: reference vectors keyed by reference id.
        sku_of: reference ids -> SKU ids; references it leaves out (a deactivated SKU, a
            reference deleted since the index was built) are not offered.
        allowed: per query, the ``[m]`` reference ids the filters allow (None = all).
        top_k: SKUs to return per query.
        config: fusion strategy and search depth.
        timings: per query, a dict that gets ``search`` and ``fuse`` milliseconds (and the
            stage's ``rerank_*``).
        rerank: the evidence stage; it re-ranks the first ``rerank.reranker.config.top_k``
            fused candidates of every query that has ``inputs``.
        inputs: per query, its crops and typed text (None: no re-ranking).

    Returns:
        Per query, up to ``top_k`` :class:`SkuScore` by score descending, and the evidence.
    """
    allowed = list(allowed) if allowed is not None else [None] * len(vectors_per_query)
    if len(allowed) != len(vectors_per_query):
        raise ValueError("one allowed-id array (or None) per query")
    if inputs is not None and len(inputs) != len(vectors_per_query):
        raise ValueError("one EvidenceInputs per query")
    active = rerank if rerank is not None and inputs is not None else None
    fused_k = max(top_k, active.reranker.config.top_k) if active is not None else top_k
    searched: list[tuple[np.ndarray, np.ndarray]] = []
    search_ms: list[float] = []
    for vectors, ids in zip(vectors_per_query, allowed, strict=True):
        started = time.perf_counter()
        available = index.ntotal if ids is None else len(ids)
        searched.append(index.search(vectors, config.depth(available), allowed_ids=ids))
        search_ms.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    hit_ids = {int(i) for _, ids in searched for i in ids.ravel().tolist() if i >= 0}
    mapping = sku_of(hit_ids)
    lookup_ms = (time.perf_counter() - started) * 1000 / max(1, len(searched))
    out = []
    for q, (cosines, reference_ids) in enumerate(searched):
        started = time.perf_counter()
        visual = rank_skus(cosines, reference_ids, mapping, top_k=fused_k,
                           strategy=config.strategy)
        if timings is not None:
            timings[q]["search"] = search_ms[q]
            timings[q]["fuse"] = (time.perf_counter() - started) * 1000 + lookup_ms
        if active is None or inputs is None or not visual:
            out.append(Ranked(visual[:top_k], visual=visual))
            continue
        given = inputs[q]
        head = [c.sku_id for c in visual[: active.reranker.config.top_k]]
        entries, references = active.catalogue(head)
        result = active.reranker.rerank(
            RerankQuery(crops=given.crops, cosines=cosines, reference_ids=reference_ids,
                        embeddings=vectors_per_query[q], query_text=given.query_text,
                        soft_attributes=dict(given.soft_attributes)),
            visual, catalogue=entries, sku_references=references, ref_to_sku=mapping,
            query_features=given.query_features,
        )
        if timings is not None:
            timings[q].update(result.timings_ms)
        out.append(Ranked(result.candidates[:top_k], result.evidence, result.confident, visual))
    return out


class Retriever:
    """Photos to SKU rankings with one model and one index, several queries at a time.

    Queries are isolated together per set of detector classes (one detector call each), all
    their crops are embedded in one pass, then each query is searched and fused on its own.
    With ``overlap_photos`` > 0 the photos instead go through in steps of that many, detection
    and segmentation of the next step overlapping the embedding of the current one
    (:func:`overlapped`). A query's stage timings are its share of its step's, by photo count.
    """

    def __init__(
        self,
        *,
        embedder: ImageEmbedder,
        index: SearchIndex,
        sku_of: SkuLookup,
        isolator: Isolator | None = None,
        config: RetrievalConfig = DEFAULT_CONFIG,
        overlap_photos: int = 0,
        rerank: RerankStep | None = None,
    ) -> None:
        if overlap_photos < 0:
            raise ValueError("overlap_photos must be >= 0")
        self.embedder = embedder
        self.index = index
        self.sku_of = sku_of
        self.isolator = isolator or Isolator(None, segmentation="none")
        self.config = config
        self.overlap_photos = overlap_photos
        self.rerank_step = rerank

    def embed_queries(
        self, queries: Sequence[Query], *, timings: Sequence[dict[str, float]] | None = None
    ) -> tuple[list[np.ndarray], list[list[Isolation]]]:
        """Isolate and embed: per query ``[n_photos, dim]`` vectors and the isolations."""
        vectors, isolations, _crops = self.embed_queries_with_crops(queries, timings=timings)
        return vectors, isolations

    def embed_queries_with_crops(
        self, queries: Sequence[Query], *, timings: Sequence[dict[str, float]] | None = None
    ) -> tuple[list[np.ndarray], list[list[Isolation]], list[list[Image.Image]]]:
        """:meth:`embed_queries`, and per query the isolated crops that were embedded."""
        timings = timings if timings is not None else [{} for _ in queries]
        by_classes: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        for q, query in enumerate(queries):
            if not query.images:
                raise ValueError("a query needs at least one photo")
            photos = by_classes.setdefault(tuple(query.detection_classes), [])
            photos.extend((q, i) for i in range(len(query.images)))
        # A step: photos (query, photo index) sharing detector classes, isolated in one call.
        steps: list[tuple[tuple[str, ...], list[tuple[int, int]]]] = []
        for classes, photos in by_classes.items():
            size = self.overlap_photos or len(photos)
            steps.extend((classes, photos[i : i + size]) for i in range(0, len(photos), size))

        def isolate_step(step: tuple[tuple[str, ...], list[tuple[int, int]]]) -> tuple[Any, ...]:
            classes, photos = step
            step_timings: dict[str, float] = {}
            crops, isolations = self.isolator.isolate(
                [queries[q].images[i] for q, i in photos],
                corrected_boxes=[
                    (queries[q].corrected_boxes or [None] * len(queries[q].images))[i]
                    for q, i in photos
                ],
                classes=classes,
                timings=step_timings,
            )
            return photos, crops, isolations, step_timings

        def embed_step(isolated: tuple[Any, ...]) -> tuple[Any, ...]:
            photos, crops, isolations, step_timings = isolated
            started = time.perf_counter()
            vectors = self.embedder.embed(crops, batch_size=max(1, len(crops)))
            step_timings["embed"] = (time.perf_counter() - started) * 1000
            return photos, vectors, isolations, step_timings, crops

        if self.overlap_photos:
            done = overlapped(steps, isolate_step, embed_step)
        else:  # isolate everything, then one embedding pass for every photo
            isolated = [isolate_step(step) for step in steps]
            every = embed_step(([p for s in isolated for p in s[0]],
                                [c for s in isolated for c in s[1]], [], {}))
            done, start = [], 0
            for photos, step_crops, step_isolations, step_timings in isolated:
                share = every[3]["embed"] * len(photos) / len(every[0])
                vectors = every[1][start : start + len(photos)]
                done.append((photos, vectors, step_isolations, step_timings | {"embed": share},
                             step_crops))
                start += len(photos)

        dim = self.embedder.dim
        out = [np.empty((len(query.images), dim), np.float32) for query in queries]
        isolations: list[list[Isolation | None]] = [[None] * len(q.images) for q in queries]
        crops: list[list[Image.Image | None]] = [[None] * len(q.images) for q in queries]
        for q in range(len(queries)):
            for stage in ("detect", "segment", "embed"):
                timings[q][stage] = 0.0
        for photos, vectors, step_isolations, step_timings, step_crops in done:
            for (q, i), vector, isolation, crop in zip(
                photos, vectors, step_isolations, step_crops, strict=True
            ):
                out[q][i] = vector
                isolations[q][i] = isolation
                crops[q][i] = crop
                for stage, ms in step_timings.items():
                    timings[q][stage] += ms / len(photos)
        return (
            out,
            [[iso for iso in row if iso is not None] for row in isolations],
            [[crop for crop in row if crop is not None] for row in crops],
        )

    def rank(
        self,
        vectors_per_query: Sequence[np.ndarray],
        *,
        allowed: Sequence[np.ndarray | None] | None = None,
        top_k: int,
        timings: Sequence[dict[str, float]] | None = None,
    ) -> list[list[SkuScore]]:
        return rank_vectors(vectors_per_query, self.index, self.sku_of, allowed=allowed,
                            top_k=top_k, config=self.config, timings=timings)

    def retrieve(self, queries: Sequence[Query], *, top_k: int) -> list[Retrieval]:
        """The whole path for each query (re-ranked when the retriever has a stage)."""
        if not queries:
            return []
        timings: list[dict[str, float]] = [{} for _ in queries]
        vectors, isolations, crops = self.embed_queries_with_crops(queries, timings=timings)
        inputs = None
        if self.rerank_step is not None:
            inputs = [EvidenceInputs(crops[q], query.query_text, query.soft_attributes)
                      for q, query in enumerate(queries)]
        ranked = rank_with_evidence(
            vectors, self.index, self.sku_of, allowed=[q.allowed_ids for q in queries],
            top_k=top_k, config=self.config, timings=timings, rerank=self.rerank_step,
            inputs=inputs,
        )
        return [
            Retrieval(r.candidates, isolations[q], timings[q], r.evidence, r.confident)
            for q, r in enumerate(ranked)
        ]


__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SEARCH_DEPTH",
    "CatalogueLookup",
    "EvidenceInputs",
    "Found",
    "ImageEmbedder",
    "Isolator",
    "ItemDetector",
    "Query",
    "Ranked",
    "RerankStep",
    "Retrieval",
    "RetrievalConfig",
    "Retriever",
    "SkuLookup",
    "lookup_from",
    "overlapped",
    "rank_vectors",
    "rank_with_evidence",
]
