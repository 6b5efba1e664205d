"""The models, loaded once per process: the embedder, the detector, and item isolation."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from functools import cache, lru_cache

import numpy as np
from django.conf import settings
from PIL import Image

from ml.embed import Embedder, configure_threads, load_embedder
from ml.interfaces import ImageEmbedder, ItemDetector
from ml.retrieval import Isolator, RetrievalConfig
from ml.segment import isolate
from ml.types import Box, Isolation
from ml.yolo import YoloDetector
from webapp.ml_gateway.sources import sources_installed

logger = logging.getLogger(__name__)


def default_model_ref() -> str:
    """The model to use when no index exists yet (a backbone name or checkpoint path)."""
    return settings.EMBEDDING_MODEL


def stage_threads() -> dict[str, int]:
    """CPU threads of the detector's and the embedding network's runtimes.

    When the worker overlaps the two stages (SKULENS_OVERLAP_PHOTOS) each gets half the cores,
    so together they never ask for more threads than there are cores; ``alone`` is every core,
    for a detection with nothing to overlap (one photo)."""
    total = settings.TORCH_THREADS or os.cpu_count() or 1
    if settings.OVERLAP_PHOTOS and total >= 2:
        return {"detect": total // 2, "embed": total - total // 2, "alone": total}
    return {"detect": total, "embed": total, "alone": total}


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
        version = sources_installed().active_index()
        model_ref = version.model_ref if version and version.model_ref else default_model_ref()
    return _embedder(model_ref)


def embedding_dim(model_ref: str | None = None) -> int:
    """The length of the vectors `model_ref` (or the active model) makes."""
    return embedder(model_ref).dim


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
            alone_threads=stage_threads()["alone"],
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


def embedder_name(model_ref: str | None = None) -> str:
    """The embedding network's version name (what registry rows and gate reports show)."""
    return embedder(model_ref).name


def isolation_name() -> str:
    """Everything about subject isolation that shapes a crop (detector and segmentation)."""
    return isolator().name


def embedding_version(model_ref: str | None = None) -> str:
    """Names everything that shapes a vector: the network and how items are isolated.

    Reference images embedded under another version are re-embedded before indexing."""
    return f"{embedder_name(model_ref)}|{isolation_name()}"


def embed_crops(crops: Sequence[Image.Image], *, model_ref: str | None = None) -> np.ndarray:
    """Embed item crops that were isolated already (e.g. rebuilt from a match's stored box and
    mask): [n, dim]."""
    return embedder(model_ref).embed(crops)
