"""The one place webapp talks to `ml`: plain data in and out, model and index cached per process.

A worker process loads the embedder once and reloads the index only when the active
IndexVersion row changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from ml.embed import Embedder, configure_threads, load_embedder
from ml.fuse import rank_skus
from ml.index import VectorIndex
from ml.segment import grabcut_mask, isolate
from ml.types import Box, SkuScore
from ml.yolo import Detection, YoloDetector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Isolation:
    """Where the item is in one photo, and how that was decided."""

    box: Box
    source: str  # "detector", "full_frame" or "corrected" (QueryPhoto.BoxSource values)
    label: str = ""
    confidence: float | None = None
    mask: np.ndarray | None = None  # [height, width] bool


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


@lru_cache(maxsize=3)
def _embedder(model_ref: str) -> Embedder:
    configure_threads(settings.TORCH_THREADS or None)
    started = time.perf_counter()
    model = load_embedder(model_ref, device=settings.TORCH_DEVICE)
    logger.info("loaded embedder %s in %.1f s", model.name, time.perf_counter() - started)
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
        )
    except Exception as exc:  # noqa: BLE001 - missing file, or no internet to download it
        logger.warning("detector %s unavailable, using the full frame: %s", weights, exc)
        return None


def isolate_items(
    images: Sequence[Image.Image],
    *,
    corrected_boxes: Sequence[Box | None],
    classes: Sequence[str],
    timings: dict[str, float],
) -> tuple[list[Image.Image], list[Isolation]]:
    """Detect (unless the appraiser drew the box), segment, and crop on a neutral background."""
    started = time.perf_counter()
    to_detect = [i for i, box in enumerate(corrected_boxes) if box is None]
    detections: dict[int, Detection | None] = {}
    model = detector() if to_detect else None
    if model is not None:
        found = model.detect_all([images[i] for i in to_detect], classes=classes)
        detections = dict(zip(to_detect, found, strict=True))
    timings["detect"] = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    crops: list[Image.Image] = []
    isolations: list[Isolation] = []
    for i, image in enumerate(images):
        corrected = corrected_boxes[i]
        detection = detections.get(i)
        if corrected is not None:
            box, source, label, confidence = corrected, "corrected", "", None
        elif detection is not None:
            box, source = detection.box, "detector"
            label, confidence = detection.label, detection.confidence
            if detection.mask is not None:  # a segmentation model outlined the item already
                isolations.append(Isolation(box, source, label, confidence, detection.mask))
                crops.append(isolate(image, box, detection.mask))
                continue
        else:
            full = Box(0.0, 0.0, float(image.width), float(image.height))
            isolations.append(Isolation(full, "full_frame"))
            crops.append(image)
            continue
        mask = grabcut_mask(image, box) if settings.SEGMENTATION == "grabcut" else None
        isolations.append(Isolation(box, source, label, confidence, mask))
        crops.append(isolate(image, box, mask))
    timings["segment"] = (time.perf_counter() - started) * 1000
    return crops, isolations


def embedding_version(model_ref: str | None = None) -> str:
    """Names everything that shapes a vector: the network and how items are isolated.

    Reference images embedded under another version are re-embedded before indexing."""
    found = detector()
    network = embedder(model_ref).name
    return f"{network}|{found.name if found else 'full-frame'}|{settings.SEGMENTATION}"


def embed_items(
    images: Sequence[Image.Image], *, classes: Sequence[str], model_ref: str | None = None
) -> np.ndarray:
    """Isolate each image's item exactly as queries are isolated, then embed: [n, dim]."""
    crops, _ = isolate_items(
        images, corrected_boxes=[None] * len(images), classes=classes, timings={}
    )
    return embedder(model_ref).embed(crops)


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
                    _replica_ensure(version.name)
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

    def loaded_name(self) -> str | None:
        """The index version this process holds (None: none loaded yet)."""
        return self._name

    def forget(self) -> None:
        with self._lock:
            self._name, self._index = None, None


active_index = _ActiveIndex()


def warm_up() -> None:
    """Load the models and index now, so the first task does not pay for it."""
    try:
        active_index.get()  # first: it fetches a trained checkpoint the embedder needs
    except IndexUnavailable as exc:
        logger.warning("warm-up: %s", exc)
    embedder()
    detector()


@dataclass(frozen=True)
class MatchQuery:
    """One match request's photos and constraints, as the model sees them."""

    images: Sequence[Image.Image]
    allowed_reference_ids: np.ndarray | None = None
    corrected_boxes: Sequence[Box | None] | None = None
    detection_classes: Sequence[str] = ()


def match(
    images: Sequence[Image.Image],
    *,
    allowed_reference_ids: np.ndarray | None,
    top_k: int,
    corrected_boxes: Sequence[Box | None] | None = None,
    detection_classes: Sequence[str] = (),
) -> MatchResult:
    query = MatchQuery(images, allowed_reference_ids, corrected_boxes, detection_classes)
    return match_batch([query], top_k=top_k)[0]


def match_batch(queries: Sequence[MatchQuery], *, top_k: int) -> list[MatchResult]:
    """Several requests through the model together: one detector call per set of target
    classes and one embedding pass for every photo, then a search and a fusion per request.

    A request's stage timings are its share of the batch's, by photo count."""
    from webapp.catalog.models import SKUImage

    if not queries:
        return []
    index_name, index, model_ref = active_index.get()
    timings: list[dict[str, float]] = [{} for _ in queries]
    crops: list[list[Image.Image]] = [[] for _ in queries]
    isolations: list[list[Isolation]] = [[] for _ in queries]
    by_classes: dict[tuple[str, ...], list[int]] = {}
    for q, query in enumerate(queries):
        if not query.images:
            raise ValueError("a match query needs at least one photo")
        by_classes.setdefault(tuple(query.detection_classes), []).append(q)
    for classes, members in by_classes.items():
        group_timings: dict[str, float] = {}
        group_crops, group_isolations = isolate_items(
            [image for q in members for image in queries[q].images],
            corrected_boxes=[
                box for q in members
                for box in (queries[q].corrected_boxes or [None] * len(queries[q].images))
            ],
            classes=classes,
            timings=group_timings,
        )
        photos = len(group_crops)
        start = 0
        for q in members:
            n = len(queries[q].images)
            crops[q] = group_crops[start : start + n]
            isolations[q] = group_isolations[start : start + n]
            timings[q].update({k: v * n / photos for k, v in group_timings.items()})
            start += n

    every_crop = [crop for query_crops in crops for crop in query_crops]
    started = time.perf_counter()
    vectors = embedder(model_ref).embed(every_crop, batch_size=len(every_crop))
    embed_ms = (time.perf_counter() - started) * 1000

    k = min(max(top_k * 10, 50), max(index.ntotal, 1))
    searched: list[tuple[np.ndarray, np.ndarray]] = []
    start = 0
    for q, query in enumerate(queries):
        n = len(crops[q])
        timings[q]["embed"] = embed_ms * n / len(every_crop)
        started = time.perf_counter()
        searched.append(
            index.search(vectors[start : start + n], k, allowed_ids=query.allowed_reference_ids)
        )
        timings[q]["search"] = (time.perf_counter() - started) * 1000
        start += n

    started = time.perf_counter()
    hit_ids = {int(i) for _, reference_ids in searched for i in reference_ids.ravel() if i >= 0}
    # A SKU deactivated since the last index sync must not be offered.
    reference_to_sku = dict(
        SKUImage.objects.filter(id__in=hit_ids, sku__is_active=True).values_list("id", "sku_id")
    )
    lookup_ms = (time.perf_counter() - started) * 1000
    version = embedding_version(model_ref)
    results = []
    for q, (cosines, reference_ids) in enumerate(searched):
        started = time.perf_counter()
        candidates = rank_skus(
            cosines, reference_ids, reference_to_sku, top_k=top_k,
            strategy=settings.FUSION_STRATEGY,
        )
        timings[q]["fuse"] = (time.perf_counter() - started) * 1000 + lookup_ms / len(queries)
        results.append(MatchResult(candidates, timings[q], version, index_name, isolations[q]))
    return results
