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
from functools import cache
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from ml.embed import Embedder, load_embedder
from ml.fuse import rank_skus
from ml.index import VectorIndex
from ml.types import SkuScore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchResult:
    candidates: list[SkuScore]
    timings_ms: dict[str, float]
    model_version: str
    index_version: str


class IndexUnavailable(RuntimeError):
    """No index has been built yet, or its files are missing."""


@cache
def embedder() -> Embedder:
    started = time.perf_counter()
    model = load_embedder(settings.EMBEDDING_MODEL, device=settings.TORCH_DEVICE)
    logger.info("loaded embedder %s in %.1f s", model.name, time.perf_counter() - started)
    return model


def embed_images(images: Sequence[Image.Image]) -> np.ndarray:
    """[n, dim] float32, L2-normalised."""
    return embedder().embed(images)


def index_path(name: str) -> Path:
    return settings.INDEX_DIR / name


class _ActiveIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._name: str | None = None
        self._index: VectorIndex | None = None

    def get(self) -> tuple[str, VectorIndex]:
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
                self._name, self._index = version.name, index
                logger.info(
                    "loaded index %s (%d vectors) in %.2f s",
                    version.name, index.ntotal, time.perf_counter() - started,
                )
            return self._name, self._index

    def forget(self) -> None:
        with self._lock:
            self._name, self._index = None, None


active_index = _ActiveIndex()


def warm_up() -> None:
    """Load the model and index now, so the first task does not pay for it."""
    embedder()
    try:
        active_index.get()
    except IndexUnavailable as exc:
        logger.warning("warm-up: %s", exc)


def match(
    images: Sequence[Image.Image], *, allowed_reference_ids: np.ndarray | None, top_k: int
) -> MatchResult:
    from webapp.catalog.models import SKUImage

    timings: dict[str, float] = {}
    started = time.perf_counter()
    index_name, index = active_index.get()
    model = embedder()
    vectors = model.embed(images)
    timings["embed"] = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    k = min(max(top_k * 10, 50), max(index.ntotal, 1))
    cosines, reference_ids = index.search(vectors, k, allowed_ids=allowed_reference_ids)
    timings["search"] = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    hit_ids = {int(i) for i in reference_ids.ravel() if i >= 0}
    reference_to_sku = dict(
        SKUImage.objects.filter(id__in=hit_ids).values_list("id", "sku_id")
    )
    candidates = rank_skus(cosines, reference_ids, reference_to_sku, top_k=top_k)
    timings["fuse"] = (time.perf_counter() - started) * 1000
    return MatchResult(candidates, timings, model.name, index_name)
