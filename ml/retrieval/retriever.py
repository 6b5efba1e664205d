"""The whole retrieval path for several queries at a time (:class:`Retriever`), and the overlap
of isolation and embedding that the worker uses (:func:`overlapped`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from ml.interfaces import ImageEmbedder, SearchIndex
from ml.retrieval.isolation import Isolator
from ml.retrieval.ranking import rank_vectors, rank_with_evidence
from ml.retrieval.types import (
    DEFAULT_CONFIG,
    EvidenceInputs,
    Query,
    RerankStep,
    Retrieval,
    RetrievalConfig,
    SkuLookup,
)
from ml.types import Isolation, SkuScore

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



class Retriever:
    """Photos to SKU rankings with one model and one index, several queries at a time.

    Queries are isolated together per set of detector classes (one detector call each), all
    their crops are embedded in one pass, then each query is searched and fused on its own.
    With ``overlap_photos`` > 0 the photos instead go through in steps of that many, detection
    and segmentation of the next step overlapping the embedding of the current one
    (:func:`overlapped`); a lone step is detected ``alone``, on every core. A query's stage
    timings are its share of its step's, by photo count.
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
        # One step has nothing to overlap with: its detection may use every core.
        alone = len(steps) == 1 or not self.overlap_photos

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
                alone=alone,
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


__all__ = ["Retriever", "overlapped"]
