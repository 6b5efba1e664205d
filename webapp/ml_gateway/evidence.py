"""Re-ranking with evidence (ml.rerank, inside ml.retrieval's one path).

The stage's inputs come from the readers (candidates' text and attributes, their reference
images, the fusion fitted on decisions), its reference evidence from the index version's
directory. Everything is plain data by the time it reaches ml.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings

from ml.images import load_rgb
from ml.rerank.attributes import AttributePredictor
from ml.rerank.fusion import DEFAULT_FUSION, FusionModel
from ml.rerank.memo import QueryEvidenceMemo
from ml.rerank.ocr import OcrEngine, OcrUnavailable
from ml.rerank.ocr import default_engine as ocr_engine
from ml.rerank.stage import RerankConfig, Reranker
from ml.rerank.store import ReferenceEvidence, ReferenceStore, reference_evidence
from ml.rerank.types import EVIDENCE_KINDS, CatalogueEntry
from ml.retrieval import RerankStep
from webapp.ml_gateway.indexes import active_index, index_path
from webapp.ml_gateway.sources import FittedFusion, IndexUnavailable, sources_installed

logger = logging.getLogger(__name__)


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


def fusion_model(weights: FittedFusion | None) -> FusionModel:
    """The fusion of these fitted weights; the measured default for None."""
    if weights is None:
        return DEFAULT_FUSION
    return FusionModel(dict(weights.weights), weights.intercept, weights.threshold,
                       weights.source, dict(weights.metrics))


def _active_fusion() -> FusionModel:
    return fusion_model(sources_installed().fitted_fusion())


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
    return {sku_id: CatalogueEntry(**asdict(found))
            for sku_id, found in sources_installed().sku_descriptions(sku_ids).items()}


def sku_reference_ids(sku_ids: Sequence[int]) -> dict[int, list[int]]:
    """Each candidate's indexable reference images, catalogue images first."""
    return sources_installed().sku_references(sku_ids)


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
    try:
        reader = ocr_engine("reference") if "text" in settings.RERANK_EVIDENCE else None
    except OcrUnavailable as exc:
        logger.warning("references are not read (text evidence off): %s", exc)
        reader = None
    computed = {}
    for image in sources_installed().reference_images(list(image_ids)):
        key = (image.checksum or f"id:{image.id}", image.primary)
        evidence = _evidence_cache.get(key)
        if evidence is None:
            try:
                picture = load_rgb(image.read())
            except (OSError, ValueError) as exc:
                logger.error("reference image %s has no evidence: %s", image.id, exc)
                continue
            evidence = reference_evidence(picture, primary=image.primary,
                                          ocr=reader if image.primary else None)
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
