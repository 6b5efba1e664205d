"""The promotion gate: a candidate model goes live only if it is provably better.

Both models are evaluated on the same gallery (the catalogue's reference images plus
confirmed appraisal photos, minus those taken from the query's own request), each request's
photos fused into one query as in matching:
1. held-out confirmed requests (never trained on, see `dataset.is_holdout`): Recall@1, Top-4,
   MAP@R, and Recall@1 against the catalogue images alone (all a new SKU has);
2. a replay of the most recent other confirmed matches: Top-1 and Top-4.
The rule (`gate_rule.gate_decide`): held-out Recall@1 must be higher; nothing else may get
worse beyond the tolerance, or beyond chance up to a hard cap (paired, query by query).
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from PIL import Image

from ml.images import ImageDecodeError, load_rgb
from ml.types import QueryOutcome
from webapp import ml_gateway
from webapp.catalog.isolations import reference_crops
from webapp.catalog.models import SKUImage
from webapp.learning.dataset import LabelledRequest, is_holdout, labelled_requests
from webapp.learning.gate_rule import Check, gate_decide
from webapp.learning.models import ModelVersion
from webapp.learning.selectors import live_model_ref
from webapp.matching.models import QueryPhoto
from webapp.ml_gateway import QueryEvidenceMemo
from webapp.review.crops import query_photo_crop

logger = logging.getLogger(__name__)

ORIGIN = re.compile(r"^match-(\d+)-photo-\d+$")  # webapp.matching.gallery's naming
# Query embeddings per (model version, photo): the live model is evaluated again at every gate.
_QUERY_CACHE: dict[tuple[str, int], np.ndarray] = {}
_QUERY_CACHE_MAX = 50_000
Progress = Callable[[str], object]  # what a callback returns is not looked at


@dataclass
class GateReport:
    passed: bool
    reasons: list[str]
    checks: list[Check]
    live_model_ref: str
    live_name: str
    candidate_name: str
    holdout_queries: int
    replay_queries: int
    gallery_images: int
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        out = asdict(self)
        out["checks"] = [{**asdict(c), "delta": c.delta} for c in self.checks]
        return out


# ----- embedding the evaluation sets ------------------------------------------------------


@dataclass(frozen=True)
class Gallery:
    image_ids: list[int]
    labels: np.ndarray  # [g] sku ids
    catalogue: np.ndarray  # [g] bool: a catalogue image (not a confirmed photo)
    origin: list[int | None]  # request an appraisal image was taken from


def gallery_images() -> Gallery:
    rows = list(
        SKUImage.objects.filter(sku__is_active=True).order_by("pk")
        .values_list("pk", "sku_id", "source", "original_name")
    )
    origin = []
    for _pk, _sku, source, name in rows:
        found = ORIGIN.match(name or "") if source == SKUImage.Source.APPRAISAL else None
        origin.append(int(found.group(1)) if found else None)
    return Gallery(
        [r[0] for r in rows],
        np.asarray([r[1] for r in rows], dtype=np.int64),
        np.asarray([r[2] == SKUImage.Source.CATALOGUE for r in rows], dtype=bool),
        origin,
    )


def _gallery_vectors(gallery: Gallery, model_ref: str) -> np.ndarray:
    """[g, dim]: stored vectors when they are this model's, else embedded like the index does."""
    version = ml_gateway.embedding_version(model_ref)
    stored = dict(
        SKUImage.objects.filter(pk__in=gallery.image_ids, embedding_model=version)
        .values_list("pk", "embedding")
    )
    todo = [i for i in gallery.image_ids if stored.get(i) is None]
    fresh: dict[int, np.ndarray] = {}
    by_classes: dict[tuple[str, ...], list[SKUImage]] = defaultdict(list)
    images = SKUImage.objects.filter(pk__in=todo).select_related("sku__series__brand__category")
    for image in images:
        by_classes[tuple(image.sku.series.brand.category.detection_classes)].append(image)
    for classes, group in by_classes.items():
        for start in range(0, len(group), 32):
            chunk = group[start : start + 32]
            pictures = []
            for image in chunk:
                try:
                    with image.image.open("rb") as handle:
                        pictures.append(load_rgb(handle.read()))
                except (ImageDecodeError, OSError) as exc:
                    logger.warning("gate: reference %s unreadable: %s", image.pk, exc)
                    pictures.append(Image.new("RGB", (32, 32), (127, 127, 127)))
            # Isolated once for both models (and the publish after a promotion).
            crops = reference_crops(pictures, [i.checksum for i in chunk], classes=classes)
            vectors = ml_gateway.embed_crops(crops, model_ref=model_ref)
            fresh.update({i.pk: v for i, v in zip(chunk, vectors, strict=True)})
    return np.stack([
        np.frombuffer(bytes(vector), dtype=np.float32) if (vector := stored.get(i)) is not None
        else np.asarray(fresh[i], dtype=np.float32)
        for i in gallery.image_ids
    ])


def _query_vectors(photo_ids: Sequence[int], model_ref: str) -> np.ndarray:
    """[n, dim] embeddings of the photos' item crops (the input the match saw)."""
    version = ml_gateway.embedding_version(model_ref)
    missing = [p for p in photo_ids if (version, p) not in _QUERY_CACHE]
    photos = QueryPhoto.objects.in_bulk(missing)
    for start in range(0, len(missing), 32):
        chunk = missing[start : start + 32]
        vectors = ml_gateway.embed_crops([query_photo_crop(photos[p]) for p in chunk],
                                         model_ref=model_ref)
        for p, v in zip(chunk, vectors, strict=True):
            _QUERY_CACHE[(version, p)] = np.asarray(v, dtype=np.float32)
    if len(_QUERY_CACHE) > _QUERY_CACHE_MAX:
        _QUERY_CACHE.clear()
        return _query_vectors(photo_ids, model_ref)
    return np.stack([_QUERY_CACHE[(version, p)] for p in photo_ids])


class _RequestCrops(Sequence[list[Image.Image]]):
    """Each request's item crops, read when the evidence stage reaches the request: holding
    the crops of thousands of held-out and replay requests at once exhausted memory."""

    def __init__(self, requests: Sequence[LabelledRequest]) -> None:
        self._requests = requests
        self._photos = QueryPhoto.objects.in_bulk([p for r in requests for p in r.photo_ids])

    def __len__(self) -> int:
        return len(self._requests)

    def __getitem__(self, q: int) -> list[Image.Image]:  # type: ignore[override]
        return [query_photo_crop(self._photos[p]) for p in self._requests[q].photo_ids]


def request_outcomes(
    requests: Sequence[LabelledRequest],
    gallery: Gallery,
    gallery_vectors: np.ndarray,
    model_ref: str,
    *,
    cold: bool = False,
    top_k: int = 4,
    memo: QueryEvidenceMemo | None = None,
) -> list[QueryOutcome]:
    """Per request (its photos fused into one query, as in matching): the ranking and AP@R.

    Ranked by the same function as serving and `python -m ml evaluate`
    (`ml_gateway.gallery_outcomes`). A request's own photos, if they joined the gallery, are
    left out of its search; `cold` searches catalogue images only."""
    if not requests:
        return []
    vectors = _query_vectors([p for r in requests for p in r.photo_ids], model_ref)
    origin = np.asarray([o if o is not None else -1 for o in gallery.origin], dtype=np.int64)
    candidates = gallery.catalogue if cold else np.ones(len(gallery.image_ids), bool)
    groups, allowed, start = [], [], 0
    for r in requests:
        groups.append(list(range(start, start + len(r.photo_ids))))
        start += len(r.photo_ids)
        allowed.append(np.flatnonzero(candidates & (origin != r.request_id)).astype(np.int64))
    labels = np.repeat([r.sku_id for r in requests], [len(r.photo_ids) for r in requests])
    crops = None
    if settings.RERANK:  # the evidence stage sees the crops the match saw, as serving does
        crops = _RequestCrops(requests)
    return ml_gateway.gallery_outcomes(
        gallery_vectors, gallery.labels, vectors, labels, groups, allowed=allowed, top_k=top_k,
        gallery_image_ids=gallery.image_ids, crops=crops, model_ref=model_ref, memo=memo,
    )


def _outcomes(
    requests: Sequence[LabelledRequest],
    gallery: Gallery,
    gallery_vectors: np.ndarray,
    model_ref: str,
    *,
    cold: bool = False,
    memo: QueryEvidenceMemo | None = None,
) -> dict[str, np.ndarray]:
    """Per query: hit@1, hit@4 and AP@R, kept per query so the gate can compare two models
    query by query."""
    outcomes = request_outcomes(requests, gallery, gallery_vectors, model_ref, cold=cold,
                                memo=memo)
    return {
        "r1": np.asarray([float(o.hit(1)) for o in outcomes]),
        "r4": np.asarray([float(o.hit(4)) for o in outcomes]),
        "map_r": np.asarray([o.ap_at_r for o in outcomes]),
    }


def evaluation_sets() -> tuple[list[LabelledRequest], list[LabelledRequest]]:
    """(held-out requests, replay requests: the most recent other confirmed matches)."""
    known = labelled_requests()
    holdout = [r for r in known if is_holdout(r.request_id)]
    replay = [r for r in known if not is_holdout(r.request_id)][-settings.GATE_REPLAY_LIMIT :]
    return holdout, replay


def model_figures(
    model_ref: str, *, progress: Progress | None = None, memo: QueryEvidenceMemo | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every figure the gate compares for one model, and the per-query outcomes behind them.
    ``memo`` keeps the query photos' evidence features from one ranking to the next."""
    memo = memo if memo is not None else ml_gateway.query_evidence_memo()
    holdout, replay = evaluation_sets()
    gallery = gallery_images()
    if progress:
        progress(f"embedding the gallery ({len(gallery.image_ids)} images) with {model_ref}")
    vectors = _gallery_vectors(gallery, model_ref)
    if progress:
        progress(f"embedding {len(holdout)} held-out and {len(replay)} replay requests")
    held = _outcomes(holdout, gallery, vectors, model_ref, memo=memo)
    cold = _outcomes(holdout, gallery, vectors, model_ref, cold=True, memo=memo)
    again = _outcomes(replay, gallery, vectors, model_ref, memo=memo)
    per_query = {
        "holdout_r1": held["r1"], "holdout_r4": held["r4"], "holdout_map_r": held["map_r"],
        "holdout_cold_r1": cold["r1"], "holdout_cold_r4": cold["r4"],
        "replay_top1": again["r1"], "replay_top4": again["r4"],
    }
    figures = {k: float(v.mean()) if len(v) else 0.0 for k, v in per_query.items()}
    return figures, per_query


def gate_evaluate(*, candidate_ref: str, progress: Progress | None = None) -> GateReport:
    started = time.perf_counter()
    live_ref = live_model_ref()
    holdout, replay = evaluation_sets()
    memo = ml_gateway.query_evidence_memo()  # both models re-rank the same photos
    live, live_q = model_figures(live_ref, progress=progress, memo=memo)
    cand, cand_q = model_figures(candidate_ref, progress=progress, memo=memo)
    passed, reasons, checks = gate_decide(
        live, cand, holdout_queries=len(holdout), tolerance=settings.GATE_TOLERANCE,
        min_gain=settings.GATE_MIN_GAIN, min_holdout=settings.GATE_MIN_HOLDOUT,
        max_drop=settings.GATE_MAX_DROP, alpha=settings.GATE_ALPHA,
        paired={k: (live_q[k], cand_q[k]) for k in live_q},
    )
    if candidate_ref == live_ref:
        passed, reasons = False, ["this model is already live"]
    return GateReport(
        passed, reasons, checks, live_ref,
        ml_gateway.embedder_name(live_ref), ml_gateway.embedder_name(candidate_ref),
        len(holdout), len(replay), len(gallery_images().image_ids),
        {"live": live, "candidate": cand}, time.perf_counter() - started,
    )


def model_version_gate(*, model: ModelVersion, progress: Progress | None = None) -> ModelVersion:
    """Evaluate `model` against the live one and store the verdict and figures."""
    report = gate_evaluate(candidate_ref=model.model_ref, progress=progress)
    with transaction.atomic():
        model.gate = ModelVersion.Gate.PASSED if report.passed else ModelVersion.Gate.REFUSED
        model.gate_report = report.as_json()
        model.gated_at = timezone.now()
        model.save(update_fields=["gate", "gate_report", "gated_at"])
    logger.info("gate %s for %s: %s", model.gate, model.name, "; ".join(report.reasons) or "ok")
    return model
