"""Measure the re-ranking stage on gallery and query CSVs (``python -m ml evaluate --rerank``).

The gallery and the queries are prepared by :mod:`ml.rerank.gallery` (catalogue, reference
features and words, embeddings); the queries run through the same
:class:`~ml.rerank.stage.Reranker` the app uses, inside the one retrieval path.

Everything the stage computes that does not depend on the fusion weights is kept per
candidate (:class:`Collected`), so a benchmark can refit the fusion on one half of the
queries and score the other half, or switch a kind of evidence off, without recomputing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ml.datasets import ImageRecord
from ml.evaluate import RECALL_KS, allowed_per_group, first_hit_rank
from ml.fuse import DEFAULT_STRATEGY
from ml.index import VectorIndex
from ml.rerank.attributes import AttributePredictor
from ml.rerank.fusion import FEATURES, FusionModel
from ml.rerank.gallery import (
    Prepared,
    build_reference_store,
    catalogue_from_gallery,
    is_primary,
    prepare,
)
from ml.rerank.stage import RerankConfig, Reranker
from ml.rerank.types import CandidateEvidence, CatalogueEntry, OcrWord
from ml.retrieval import (
    EvidenceInputs,
    RerankStep,
    RetrievalConfig,
    lookup_from,
    rank_with_evidence,
)
from ml.types import EvalReport, SkuScore

KIND_FEATURES = {
    "spatial": ("spatial",), "text": ("text",), "attributes": ("attributes",),
    "query_text": ("query_text",), "soft_attributes": ("soft_attributes",),
}



@dataclass(frozen=True)
class Collected:
    """One query group's outcome: the visual ranking and the stage's evidence on its head."""

    rows: tuple[int, ...]
    label: int
    visual: list[SkuScore]
    evidence: list[CandidateEvidence]  # in visual order
    timings_ms: dict[str, float]
    ocr_ran: bool


class CachedOcr:
    """An OCR engine that reads each distinct image once (benchmarks run several settings
    over the same photos)."""

    def __init__(self, engine: Any, cache: dict[str, list[OcrWord]]) -> None:
        self.engine = engine
        self.name = getattr(engine, "name", "ocr")
        self.cache = cache

    def read(self, image: Image.Image) -> list[OcrWord]:
        key = hashlib.md5(image.tobytes(), usedforsecurity=False).hexdigest()
        if key not in self.cache:
            self.cache[key] = self.engine.read(image)
        return self.cache[key]


def collect(
    prepared: Prepared,
    groups: Sequence[Sequence[int]],
    reranker: Reranker,
    *,
    allowed: Sequence[np.ndarray | None] | None = None,
    strategy: str = DEFAULT_STRATEGY,
    attribute_embeddings: bool = True,
    query_text: Callable[[int, Sequence[int]], str] | None = None,
    soft_attributes: Callable[[int], Mapping[str, str]] | None = None,
    reuse_features: bool = True,
    progress: bool = False,
) -> list[Collected]:
    """Rank every group through the one retrieval path with the stage
    (:func:`ml.retrieval.rank_with_evidence`) and keep its evidence in visual order.

    Args:
        allowed: per group, the gallery rows a filter allows (None = all).
        query_text: (label, query rows) -> text the "appraiser" typed (multimodal rows).
        soft_attributes: label -> attributes the "appraiser" gave.
        reuse_features: take query features / OCR words from the caches (benchmarks); False
            computes them inside the stage, as serving does, so ``timings_ms`` are real.
    """
    index = VectorIndex.build(
        np.arange(len(prepared.gallery_vectors), dtype=np.int64), prepared.gallery_vectors,
        kind="flat",
    )
    ref_to_sku = dict(enumerate(prepared.gallery_labels.tolist()))
    if reuse_features and reranker.ocr is not None:
        reranker = Reranker(reranker.config, store=reranker.store, fusion=reranker.fusion,
                            ocr=CachedOcr(reranker.ocr, prepared.query_words),
                            attributes=reranker.attributes if attribute_embeddings else None)
    elif not attribute_embeddings:
        reranker = Reranker(reranker.config, store=reranker.store, fusion=reranker.fusion,
                            ocr=reranker.ocr)

    def catalogue(sku_ids: Sequence[int]) -> tuple[Mapping[int, CatalogueEntry],
                                                   Mapping[int, Sequence[int]]]:
        return ({s: prepared.catalogue[s] for s in sku_ids if s in prepared.catalogue},
                {s: prepared.sku_references.get(s, []) for s in sku_ids})

    step = RerankStep(reranker, catalogue)
    config = RetrievalConfig(strategy=strategy)
    out = []
    iterator: Any = enumerate(groups)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(groups), desc="re-ranking", leave=False)
    for gi, rows in iterator:
        rows = list(rows)
        label = int(prepared.query_labels[rows[0]])
        timings: dict[str, float] = {}
        inputs = EvidenceInputs(
            crops=[prepared.image(r) for r in rows],
            query_text=query_text(label, rows) if query_text else "",
            soft_attributes=soft_attributes(label) if soft_attributes else {},
            query_features=[prepared.features_of(r) for r in rows] if reuse_features else None,
        )
        (ranked,) = rank_with_evidence(
            [prepared.query_vectors[rows]], index, lookup_from(ref_to_sku),
            allowed=[None if allowed is None else allowed[gi]], top_k=max(RECALL_KS),
            config=config, timings=[timings], rerank=step, inputs=[inputs],
        )
        stage_ms = {k: v for k, v in timings.items() if k.startswith("rerank_")}
        by_rank = sorted(ranked.evidence, key=lambda e: e.visual_rank)
        out.append(Collected(tuple(rows), label, ranked.visual[: max(RECALL_KS)], by_rank,
                             stage_ms, "rerank_text" in stage_ms))
    return out


def ranked_labels(item: Collected, fusion: FusionModel | None,
                  features: Sequence[str] = FEATURES) -> list[int]:
    """The SKU ranking after re-ranking with ``fusion`` over ``features`` only (None: the
    visual ranking)."""
    if fusion is None or not item.evidence:
        return [s.sku_id for s in item.visual]
    keep = set(features)

    def probability(e: CandidateEvidence) -> float:
        return fusion.probability({k: v for k, v in e.features.items() if k in keep})

    head = sorted(item.evidence, key=lambda e: (-probability(e), e.visual_rank))
    return [e.sku_id for e in head] + [s.sku_id for s in item.visual[len(head):]]


def report(items: Sequence[Collected], fusion: FusionModel | None,
           features: Sequence[str] = FEATURES) -> EvalReport:
    """Recall@1/4/10 of the (re-)ranked lists; ``map_at_r`` is left at 0 (reference-level
    MAP@R does not change with SKU re-ranking: see :func:`ml.evaluate.evaluate`)."""
    hits = np.zeros(len(RECALL_KS))
    for item in items:
        rank = first_hit_rank(ranked_labels(item, fusion, features), item.label)
        if rank is not None:
            hits += np.array([rank < k for k in RECALL_KS], dtype=np.float64)
    n = len(items)
    recall = hits / n if n else hits
    return EvalReport(float(recall[0]), float(recall[1]), float(recall[2]), 0.0, n)


def recall_at_1_by(items: Sequence[Collected], fusion: FusionModel | None,
                   key: Callable[[Collected], str],
                   features: Sequence[str] = FEATURES) -> dict[str, float]:
    """R@1 per value of ``key`` (e.g. the department of the query's first photo)."""
    totals: dict[str, list[int]] = {}
    for item in items:
        ranking = ranked_labels(item, fusion, features)
        t = totals.setdefault(key(item), [0, 0])
        t[0] += int(bool(ranking) and ranking[0] == item.label)
        t[1] += 1
    return {k: v[0] / v[1] for k, v in sorted(totals.items())}


@dataclass(frozen=True)
class RerankEvalResult:
    model: str
    config: RerankConfig
    fusion: FusionModel
    visual: EvalReport
    reranked: EvalReport
    by_value: dict[str, tuple[float, float]]  # breakdown value -> (visual R@1, reranked R@1)
    filtered_visual: EvalReport | None
    filtered_reranked: EvalReport | None
    filter_column: str | None
    breakdown_column: str | None
    latency_ms: dict[str, tuple[float, float]]  # kind -> (p50, p95) over queries
    ocr_share: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model, "visual": self.visual.to_dict(),
            "reranked": self.reranked.to_dict(), "by_value": self.by_value,
            "breakdown_column": self.breakdown_column, "latency_ms": self.latency_ms,
            "ocr_share": self.ocr_share, "fusion": self.fusion.to_dict(),
            "config": self.config.__dict__, "seconds": round(self.seconds, 2),
        }
        if self.filtered_visual is not None and self.filtered_reranked is not None:
            out["filter_column"] = self.filter_column
            out["filtered_visual"] = self.filtered_visual.to_dict()
            out["filtered_reranked"] = self.filtered_reranked.to_dict()
        return out


def latency_summary(items: Sequence[Collected]) -> dict[str, tuple[float, float]]:
    """Per stage kind and in total: (p50, p95) ms over queries (0 where a kind did not run)."""
    kinds = sorted({k for item in items for k in item.timings_ms})
    out = {}
    totals = [sum(item.timings_ms.values()) for item in items]
    for kind in kinds:
        values = [item.timings_ms.get(kind, 0.0) for item in items]
        out[kind] = (float(np.percentile(values, 50)), float(np.percentile(values, 95)))
    if totals:
        out["total"] = (float(np.percentile(totals, 50)), float(np.percentile(totals, 95)))
    return out


def evaluate_reranked(
    gallery: Sequence[ImageRecord],
    queries: Sequence[ImageRecord],
    embedder: Any,
    *,
    config: RerankConfig | None = None,
    fusion: FusionModel | None = None,
    ocr: Any | None = None,
    reference_ocr: Any | None = None,
    attributes: AttributePredictor | None = None,
    filter_column: str | None = None,
    breakdown_column: str | None = "department",
    group_size: int | None = None,
    strategy: str = DEFAULT_STRATEGY,
    text_column: str | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> RerankEvalResult:
    """Visual and re-ranked Recall@K, unfiltered and (with ``filter_column``) filtered, with
    a per-``breakdown_column`` R@1 and the stage's latency per kind (computed as serving
    computes it: features and OCR inside the stage). With ``text_column``, each query's
    first row's value in that column is what the appraiser typed."""
    from ml.evaluate import group_queries

    started = time.perf_counter()
    reference_ocr = reference_ocr if reference_ocr is not None else ocr
    prepared = prepare(gallery, queries, embedder, ocr=reference_ocr, batch_size=batch_size,
                       progress=progress)
    reranker = Reranker(config, store=prepared.store, fusion=fusion, ocr=ocr,
                        attributes=attributes)
    groups = group_queries(queries, group_size=group_size)
    typed = None
    if text_column:
        def typed(_label: int, rows: Sequence[int]) -> str:
            return queries[rows[0]].get(text_column) or ""
    items = collect(prepared, groups, reranker, strategy=strategy, reuse_features=False,
                    query_text=typed, progress=progress)
    used = reranker.fusion

    def breakdown(item: Collected) -> str:
        return (queries[item.rows[0]].get(breakdown_column or "") or "") if breakdown_column \
            else ""

    by_value: dict[str, tuple[float, float]] = {}
    if breakdown_column:
        before = recall_at_1_by(items, None, breakdown)
        after = recall_at_1_by(items, used, breakdown)
        by_value = {k: (before[k], after[k]) for k in before}
    filtered_visual = filtered_reranked = None
    if filter_column:
        allowed, _missing = allowed_per_group(gallery, queries, groups, filter_column)
        filtered = collect(prepared, groups, reranker, allowed=allowed, strategy=strategy,
                           query_text=typed, progress=progress)
        filtered_visual, filtered_reranked = report(filtered, None), report(filtered, used)
    return RerankEvalResult(
        model=getattr(embedder, "name", "unknown"),
        config=reranker.config,
        fusion=used,
        visual=report(items, None),
        reranked=report(items, used),
        by_value=by_value,
        filtered_visual=filtered_visual,
        filtered_reranked=filtered_reranked,
        filter_column=filter_column,
        breakdown_column=breakdown_column,
        latency_ms=latency_summary(items),
        ocr_share=sum(i.ocr_ran for i in items) / max(1, len(items)),
        seconds=time.perf_counter() - started,
    )


def format_rerank_table(result: RerankEvalResult) -> str:
    lines = [
        f"model: {result.model}   re-ranking top {result.config.top_k} "
        f"(fusion {result.fusion.source})   ({result.seconds:.1f} s)",
        f"{'':<28}{'R@1':>8}{'R@4':>8}{'R@10':>8}{'queries':>9}",
    ]
    rows = [("visual", result.visual), ("re-ranked", result.reranked)]
    if result.filtered_visual is not None and result.filtered_reranked is not None:
        rows += [(f"visual, filtered ({result.filter_column})", result.filtered_visual),
                 (f"re-ranked, filtered ({result.filter_column})", result.filtered_reranked)]
    for name, rep in rows:
        lines.append(f"{name:<28}{rep.recall_at_1:>8.4f}{rep.recall_at_4:>8.4f}"
                     f"{rep.recall_at_10:>8.4f}{rep.n_queries:>9d}")
    for value, (before, after) in result.by_value.items():
        lines.append(f"  R@1 {result.breakdown_column}={value}: {before:.4f} -> {after:.4f}")
    for kind, (p50, p95) in result.latency_ms.items():
        lines.append(f"  {kind}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    lines.append(f"  OCR ran on {100 * result.ocr_share:.0f}% of the queries (close calls)")
    return "\n".join(lines)


__all__ = [
    "KIND_FEATURES",
    "CachedOcr",
    "Collected",
    "Prepared",
    "RerankEvalResult",
    "build_reference_store",
    "catalogue_from_gallery",
    "collect",
    "evaluate_reranked",
    "format_rerank_table",
    "is_primary",
    "latency_summary",
    "prepare",
    "ranked_labels",
    "recall_at_1_by",
    "report",
]
