"""The one place webapp talks to `ml`: plain data in and out, model and index cached per process.

A worker process loads the embedder once and reloads the index only when the active
IndexVersion row changes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from ml.embed import Embedder, configure_threads, load_embedder
from ml.evaluate import query_outcomes
from ml.images import load_rgb
from ml.index import IndexCorruptError, VectorIndex
from ml.interfaces import ImageEmbedder, ItemDetector
from ml.rerank.attributes import AttributePredictor
from ml.rerank.fusion import FusionModel
from ml.rerank.memo import QueryEvidenceMemo
from ml.rerank.ocr import OcrEngine, OcrUnavailable
from ml.rerank.ocr import default_engine as ocr_engine
from ml.rerank.stage import RerankConfig, Reranker
from ml.rerank.store import ReferenceEvidence, ReferenceStore, reference_evidence
from ml.rerank.types import EVIDENCE_KINDS, CatalogueEntry
from ml.retrieval import (
    EvidenceInputs,
    Isolator,
    Query,
    RerankStep,
    RetrievalConfig,
    Retriever,
    rank_with_evidence,
)
from ml.segment import isolate
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
    # Re-ranking evidence per candidate (ml.rerank CandidateEvidence as JSON, each with its
    # sku_id) and the stage's confident flag; empty / None without re-ranking.
    evidence: list[dict[str, object]] = field(default_factory=list)
    confident: bool | None = None


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


def embedder(model_ref: str | None = None) -> ImageEmbedder:
    """The embedder for `model_ref`, or for the active index (the two always travel together)."""
    if model_ref is None:
        from webapp.learning.selectors import active_index_version

        version = active_index_version()
        model_ref = version.model_ref if version and version.model_ref else default_model_ref()
    return _embedder(model_ref)


@cache
def detector() -> ItemDetector | None:
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


def item_crop(image: Image.Image, box: Box, mask: np.ndarray | None) -> Image.Image:
    """The item in ``box`` on a neutral background (``mask [height, width]`` bool, or None), as
    :meth:`isolate_items` crops it: rebuilds a stored isolation."""
    return isolate(image, box, mask)


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
    gallery_image_ids: Sequence[int] | None = None,
    crops: Sequence[Sequence[Image.Image]] | None = None,
    model_ref: str | None = None,
    memo: QueryEvidenceMemo | None = None,
) -> list[QueryOutcome]:
    """Labelled queries ranked against an in-memory gallery exactly as a match ranks them
    (same depth rule and fusion, and, given the gallery's SKUImage ids and each group's crops,
    the same re-ranking): the gate's per-query figures. ``memo`` keeps the query crops'
    features and words for the next call on the same photos."""
    step = inputs = None
    if settings.RERANK and gallery_image_ids is not None and crops is not None:
        step = gallery_rerank_step(gallery_image_ids, gallery_labels,
                                   model_ref or default_model_ref(), memo=memo)
        inputs = _EvidenceOnDemand(crops)
    return query_outcomes(
        gallery_vectors, gallery_labels, query_vectors, query_labels, groups,
        allowed=allowed, config=retrieval_config(), top_k=top_k, rerank=step, inputs=inputs,
    )


class _EvidenceOnDemand(Sequence[EvidenceInputs]):
    """Per query, its evidence inputs made when the evidence stage reaches it and not kept:
    the gate re-ranks thousands of requests without holding every crop and its local
    features at once (``crops`` may itself load each query's crops on access)."""

    def __init__(self, crops: Sequence[Sequence[Image.Image]]) -> None:
        self._crops = crops

    def __len__(self) -> int:
        return len(self._crops)

    def __getitem__(self, q: int) -> EvidenceInputs:  # type: ignore[override]
        return EvidenceInputs(list(self._crops[q]))


def index_path(name: str) -> Path:
    return settings.INDEX_DIR / name


def _replica_ensure(name: str) -> None:
    """This machine's copy of index version `name` (and its checkpoint), fetched from the
    artefact store if missing (webapp.learning.artifacts)."""
    from webapp.learning.artifacts import ArtifactError, index_local_ensure

    try:
        index_local_ensure(name=name)
    except ArtifactError as exc:
        raise IndexUnavailable(str(exc)) from exc


def _load_checked(version: object) -> VectorIndex:
    """The version's index; IndexUnavailable when its files are missing, corrupt or hold
    another number of vectors than the database recorded."""
    name, expected = version.name, version.vector_count  # type: ignore[attr-defined]
    try:
        _replica_ensure(name)  # another machine published it: fetch it from the store
        index, _meta = VectorIndex.load(index_path(name))
    except (FileNotFoundError, IndexCorruptError) as exc:
        raise IndexUnavailable(f"Index files for {name} are missing or corrupt: {exc}") from exc
    if index.ntotal != expected:
        raise IndexUnavailable(
            f"Index {name} holds {index.ntotal} vectors but the database recorded {expected}"
        )
    return index


def _loadable_index(active: object) -> tuple[object, VectorIndex]:
    """The active version's index or, when its files are unusable, the newest earlier ready
    version of the same model that loads (logged as an error: the catalogue's latest changes
    are missing from it until the next publish, which rebuilds)."""
    from webapp.learning.models import IndexVersion

    try:
        return active, _load_checked(active)
    except IndexUnavailable as exc:
        problem = exc
    earlier = IndexVersion.objects.filter(
        status=IndexVersion.Status.READY,
        model_version=active.model_version,  # type: ignore[attr-defined]
        created_at__lt=active.created_at,  # type: ignore[attr-defined]
    ).order_by("-created_at")[:5]
    for version in earlier:
        try:
            index = _load_checked(version)
        except IndexUnavailable:
            continue
        logger.error("%s; serving the previous version %s until the next publish rebuilds "
                     "it (manage.py build_index --full)", problem, version.name)
        return version, index
    raise IndexUnavailable(f"{problem}; no earlier version loads either: run manage.py "
                           "build_index --full") from problem


class _ActiveIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: str | None = None  # the active row this cache was loaded for
        self._name: str | None = None  # the version actually served (a fallback, at worst)
        self._index: VectorIndex | None = None
        self._model_ref = ""

    def get(self) -> tuple[str, VectorIndex, str]:
        """(index version name, index, model ref): a match uses all three together."""
        from webapp.learning.selectors import active_index_version

        active = active_index_version()
        if active is None:
            raise IndexUnavailable("No search index has been built yet.")
        with self._lock:
            if self._active != active.name or self._index is None:
                started = time.perf_counter()
                version, index = _loadable_index(active)
                index.use_device("auto")  # a GPU replica when faiss-gpu sees one
                self._active, self._name, self._index = active.name, version.name, index
                self._model_ref = version.model_ref or default_model_ref()  # type: ignore[attr-defined]
                logger.info(
                    "loaded index %s (%d vectors) in %.2f s",
                    version.name, index.ntotal, time.perf_counter() - started,  # type: ignore[attr-defined]
                )
            assert self._name is not None
            return self._name, self._index, self._model_ref

    def loaded_name(self) -> str | None:
        """The index version this process holds (None: none loaded yet)."""
        return self._name

    def forget(self) -> None:
        with self._lock:
            self._active, self._name, self._index = None, None, None


active_index = _ActiveIndex()


def warm_up() -> None:
    """Load the models and index now, so the first task does not pay for it."""
    try:
        active_index.get()  # first: it fetches a trained checkpoint the embedder needs
    except IndexUnavailable as exc:
        logger.warning("warm-up: %s", exc)
    embedder()
    detector()


MatchQuery = Query  # one request's photos and constraints, as the model sees them


def active_sku_lookup(reference_ids: Collection[int]) -> dict[int, int]:
    """Reference id -> SKU id for references of active SKUs: a SKU deactivated since the last
    index sync must not be offered."""
    from webapp.catalog.models import SKUImage

    return dict(
        SKUImage.objects.filter(id__in=list(reference_ids), sku__is_active=True)
        .values_list("id", "sku_id")
    )


def _live_retriever(*, rerank: bool = False) -> tuple[str, str, Retriever]:
    index_name, index, model_ref = active_index.get()
    retriever = Retriever(
        embedder=embedder(model_ref), index=index, sku_of=active_sku_lookup,
        isolator=isolator(), config=retrieval_config(), overlap_photos=settings.OVERLAP_PHOTOS,
        rerank=rerank_step(index_name, model_ref) if rerank and settings.RERANK else None,
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
    index_name, model_ref, retriever = _live_retriever(rerank=True)
    version = embedding_version(model_ref)
    return [
        MatchResult(found.candidates, found.timings_ms, version, index_name, found.isolations,
                    [e.to_json() for e in found.evidence], found.confident)
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
    index_name, model_ref, retriever = _live_retriever(rerank=True)
    vectors: list[np.ndarray] = []
    crops: list[list[Image.Image]] = []
    for start in range(0, len(queries), batch_size):
        chunk = [Query(photos, detection_classes=classes) for photos in
                 queries[start : start + batch_size]]
        chunk_vectors, _isolations, chunk_crops = retriever.embed_queries_with_crops(chunk)
        vectors.extend(chunk_vectors)
        crops.extend(chunk_crops)
    inputs = [EvidenceInputs(c) for c in crops] if retriever.rerank_step is not None else None
    rankings = {
        name: [r.candidates for r in rank_with_evidence(
            vectors, retriever.index, retriever.sku_of, allowed=[allowed] * len(vectors),
            top_k=top_k, config=retriever.config, rerank=retriever.rerank_step, inputs=inputs,
        )]
        for name, allowed in variants.items()
    }
    return LiveRankings(embedding_version(model_ref), index_name, retriever.index.ntotal,
                        rankings)


def indexed_reference_ids() -> np.ndarray:
    """[n] ids of the references in the active index."""
    return active_index.get()[1].ids()


# ----- re-ranking with evidence (ml.rerank, inside ml.retrieval's one path) ---------------
# The stage's inputs from the database (candidates' text and attributes, their reference
# images), its reference evidence from the index version's directory, and its fusion model
# from the newest FusionWeights row. Everything is plain data by the time it reaches ml.


@lru_cache(maxsize=4)
def reference_store(index_name: str) -> ReferenceStore | None:
    """The reference evidence published with an index version (None: built without it)."""
    try:
        return ReferenceStore.load(index_path(index_name))
    except (OSError, ValueError) as exc:
        logger.warning("reference evidence of %s unreadable, re-ranking without it: %s",
                       index_name, exc)
        return None


@cache
def _ocr_engine() -> OcrEngine | None:
    try:
        return ocr_engine("query")
    except OcrUnavailable as exc:
        logger.warning("text evidence off: %s", exc)
        return None


@lru_cache(maxsize=3)
def _attribute_predictor(model_ref: str) -> AttributePredictor | None:
    path = Path(model_ref)
    return AttributePredictor.from_checkpoint(path) if path.is_file() else None


def rerank_config() -> RerankConfig:
    kinds = set(settings.RERANK_EVIDENCE)
    return RerankConfig(
        top_k=settings.RERANK_TOP_K,
        ocr_margin=settings.RERANK_OCR_MARGIN,
    ).without(*[k for k in EVIDENCE_KINDS if k not in kinds])


def reranker(index_name: str, model_ref: str) -> Reranker:
    config = rerank_config()
    return Reranker(
        config,
        store=reference_store(index_name) if config.spatial or config.text else None,
        fusion=_active_fusion(),
        ocr=_ocr_engine() if config.text else None,
        attributes=_attribute_predictor(model_ref) if config.attributes else None,
    )


def catalogue_entries(sku_ids: Sequence[int]) -> dict[int, CatalogueEntry]:
    """The candidates' text and attributes as the stage compares them."""
    from webapp.catalog.models import SKU

    entries = {}
    for sku in SKU.objects.filter(id__in=sku_ids).select_related("series__brand__category"):
        attributes = {k: str(v) for k, v in (sku.attributes or {}).items()
                      if k != "description" and v not in (None, "")}
        attributes.update({k: v for k, v in (("colour", sku.colour), ("material", sku.material),
                                             ("size", sku.size)) if v})
        entries[sku.id] = CatalogueEntry(
            sku_id=sku.id,
            name=sku.name,
            category=sku.series.brand.category.name,
            brand=sku.series.brand.name,
            series=sku.series.name,
            description=str((sku.attributes or {}).get("description", "")),
            attributes=attributes,
        )
    return entries


def sku_reference_ids(sku_ids: Sequence[int]) -> dict[int, list[int]]:
    """Each candidate's indexable reference images, catalogue images first."""
    from webapp.catalog.selectors import indexable_images

    out: dict[int, list[int]] = {}
    rows = indexable_images().filter(sku_id__in=sku_ids).order_by("sku_id", "position", "id")
    for image_id, sku_id in rows.values_list("id", "sku_id"):
        out.setdefault(sku_id, []).append(image_id)
    return out


def rerank_step(index_name: str, model_ref: str) -> RerankStep:
    """The evidence stage as configured, reading candidates from the database."""

    def catalogue(sku_ids: Sequence[int]) -> tuple[dict[int, CatalogueEntry],
                                                   dict[int, list[int]]]:
        return catalogue_entries(sku_ids), sku_reference_ids(sku_ids)

    return RerankStep(reranker(index_name, model_ref), catalogue)


# Reference evidence is a function of the image alone: computed once per image content.
_evidence_cache: OrderedDict[tuple[str, bool], ReferenceEvidence] = OrderedDict()
_EVIDENCE_CACHE_SIZE = 4096


def _reference_evidence(image_ids: Sequence[int]) -> dict[int, ReferenceEvidence]:
    """Evidence of reference images, computed (or taken from the per-process cache)."""
    from webapp.catalog.models import SKUImage

    try:
        reader = ocr_engine("reference") if "text" in settings.RERANK_EVIDENCE else None
    except OcrUnavailable as exc:
        logger.warning("references are not read (text evidence off): %s", exc)
        reader = None
    computed = {}
    for image in SKUImage.objects.filter(id__in=list(image_ids)).only("id", "image", "source",
                                                                     "checksum"):
        primary = image.source == SKUImage.Source.CATALOGUE
        key = (image.checksum or f"id:{image.id}", primary)
        evidence = _evidence_cache.get(key)
        if evidence is None:
            try:
                with image.image.open("rb") as handle:
                    picture = load_rgb(handle.read())
            except (OSError, ValueError) as exc:
                logger.error("reference image %s has no evidence: %s", image.id, exc)
                continue
            evidence = reference_evidence(picture, primary=primary,
                                          ocr=reader if primary else None)
            if image.checksum:
                _evidence_cache[key] = evidence
                while len(_evidence_cache) > _EVIDENCE_CACHE_SIZE:
                    _evidence_cache.popitem(last=False)
        computed[image.id] = evidence
    return computed


def reference_store_publish(name: str, ids: Sequence[int], *, parent: str | None) -> int:
    """Write the reference evidence of index version `name` (for `ids`) into its directory,
    reusing the parent version's for the references it already had. Returns the number of
    references whose evidence was computed now."""
    wanted = {int(i) for i in ids}
    previous = reference_store(parent) if parent else None
    kept = {i: e for i in wanted if previous is not None
            and (e := previous.get(i)) is not None}
    computed = _reference_evidence(sorted(wanted - set(kept)))
    kept.update(computed)
    ReferenceStore.from_evidence(kept).save(index_path(name))
    return len(computed)


def query_evidence_memo() -> QueryEvidenceMemo:
    """Keeps query crops' local features and OCR words while the same photos are re-ranked
    again (the gate ranks each held-out request four times)."""
    return QueryEvidenceMemo()


def gallery_rerank_step(
    image_ids: Sequence[int], labels: np.ndarray, model_ref: str,
    *, memo: QueryEvidenceMemo | None = None,
) -> RerankStep:
    """The evidence stage over an in-memory gallery whose reference ids are row numbers
    (the gate's): each row gets its SKUImage's evidence, from the active index's store."""
    try:
        index_name = active_index.get()[0]
    except IndexUnavailable:
        index_name = ""
    live = reference_store(index_name) if index_name else None
    by_row: dict[int, ReferenceEvidence] = {}
    missing = []
    for row, image_id in enumerate(image_ids):
        found = live.get(int(image_id)) if live is not None else None
        if found is None:
            missing.append(int(image_id))
        else:
            by_row[row] = found
    fresh = _reference_evidence(missing)
    row_of = {int(image_id): row for row, image_id in enumerate(image_ids)}
    by_row.update({row_of[i]: e for i, e in fresh.items()})
    config = rerank_config()
    stage = Reranker(
        config, store=ReferenceStore.from_evidence(by_row), fusion=_active_fusion(),
        ocr=_ocr_engine() if config.text else None,
        attributes=_attribute_predictor(model_ref) if config.attributes else None,
        memo=memo,
    )
    rows_of: dict[int, list[int]] = {}
    for row, sku in enumerate(np.asarray(labels).tolist()):
        rows_of.setdefault(int(sku), []).append(row)

    def catalogue(sku_ids: Sequence[int]) -> tuple[dict[int, CatalogueEntry],
                                                   dict[int, list[int]]]:
        return catalogue_entries(sku_ids), {s: rows_of.get(s, []) for s in sku_ids}

    return RerankStep(stage, catalogue)


def _active_fusion() -> FusionModel:
    from webapp.matching.calibration import active_fusion

    return active_fusion()
