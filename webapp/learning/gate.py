"""The promotion gate: a candidate model goes live only if it is provably better.

Two checks, both against the live model, on the same gallery (the catalogue's reference
images plus confirmed appraisal photos, minus those taken from the query's own request):
1. held-out confirmed photos (never trained on, see `dataset.is_holdout`): Recall@1 must
   gain more than GATE_MIN_GAIN; Top-4, MAP@R, and Recall@1 against the catalogue images
   alone (what a new SKU has) may not drop by more than GATE_TOLERANCE;
2. a replay of past confirmed matches (the rest): Top-1 and Top-4 may not drop by more than
   GATE_TOLERANCE, so what works today keeps working.
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

from ml.evaluate import evaluate_embeddings
from ml.images import ImageDecodeError, load_rgb
from webapp import ml_gateway
from webapp.catalog.models import SKUImage
from webapp.learning.dataset import LabelledRequest, is_holdout, labelled_requests
from webapp.learning.models import ModelVersion
from webapp.learning.selectors import live_model_ref
from webapp.matching.models import QueryPhoto
from webapp.review.crops import query_photo_crop

logger = logging.getLogger(__name__)

ORIGIN = re.compile(r"^match-(\d+)-photo-\d+$")  # webapp.matching.gallery's naming
# Query embeddings per (model version, photo): the live model is evaluated again at every gate.
_QUERY_CACHE: dict[tuple[str, int], np.ndarray] = {}
_QUERY_CACHE_MAX = 50_000
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    name: str
    live: float
    candidate: float
    rule: str  # "gain": must exceed live by more than threshold; "no_worse": may drop by it
    threshold: float
    ok: bool

    @property
    def delta(self) -> float:
        return self.candidate - self.live


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


def gate_decide(
    live: dict[str, float],
    candidate: dict[str, float],
    *,
    holdout_queries: int,
    tolerance: float,
    min_gain: float,
    min_holdout: int,
) -> tuple[bool, list[str], list[Check]]:
    """The verdict from the figures alone (pure, so the rule is easy to test and to read)."""
    specs = [
        ("held-out Recall@1", "holdout_r1", "gain", min_gain),
        ("held-out Top-4", "holdout_r4", "no_worse", tolerance),
        ("held-out MAP@R", "holdout_map_r", "no_worse", tolerance),
        # New SKUs have only catalogue images: matching against those must not get worse.
        ("held-out R@1, catalogue images only", "holdout_cold_r1", "no_worse", tolerance),
        ("replay Top-1", "replay_top1", "no_worse", tolerance),
        ("replay Top-4", "replay_top4", "no_worse", tolerance),
    ]
    checks = []
    for name, key, rule, threshold in specs:
        a, b = live.get(key, 0.0), candidate.get(key, 0.0)
        ok = b - a > threshold if rule == "gain" else b - a >= -threshold - 1e-12
        checks.append(Check(name, a, b, rule, threshold, ok))
    reasons = []
    if holdout_queries < min_holdout:
        reasons.append(f"only {holdout_queries} held-out photos (at least {min_holdout} needed)")
    for check in checks:
        if not check.ok:
            how = f"gain more than {check.threshold:+.3f}" if check.rule == "gain" else (
                f"drop at most {check.threshold:.3f}")
            reasons.append(f"{check.name} {check.live:.3f} -> {check.candidate:.3f} "
                           f"({check.delta:+.3f}); it must {how}")
    return not reasons, reasons, checks


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
    by_classes: dict[tuple[str, ...], list[tuple[int, Image.Image]]] = defaultdict(list)
    images = SKUImage.objects.filter(pk__in=todo).select_related("sku__series__brand__category")
    for image in images:
        try:
            with image.image.open("rb") as handle:
                picture = load_rgb(handle.read())
        except (ImageDecodeError, OSError) as exc:
            logger.warning("gate: reference %s unreadable: %s", image.pk, exc)
            picture = Image.new("RGB", (32, 32), (127, 127, 127))
        classes = tuple(image.sku.series.brand.category.detection_classes)
        by_classes[classes].append((image.pk, picture))
    for classes, group in by_classes.items():
        for start in range(0, len(group), 32):
            chunk = group[start : start + 32]
            vectors = ml_gateway.embed_items([p for _, p in chunk], classes=classes,
                                             model_ref=model_ref)
            fresh.update({pk: v for (pk, _), v in zip(chunk, vectors, strict=True)})
    return np.stack([
        np.frombuffer(bytes(stored[i]), dtype=np.float32) if stored.get(i) is not None
        else np.asarray(fresh[i], dtype=np.float32)
        for i in gallery.image_ids
    ])


def _query_vectors(photo_ids: Sequence[int], model_ref: str) -> np.ndarray:
    """[n, dim] embeddings of the photos' item crops (the input the match saw)."""
    version = ml_gateway.embedding_version(model_ref)
    missing = [p for p in photo_ids if (version, p) not in _QUERY_CACHE]
    photos = QueryPhoto.objects.in_bulk(missing)
    embedder = ml_gateway.embedder(model_ref)
    for start in range(0, len(missing), 32):
        chunk = missing[start : start + 32]
        vectors = embedder.embed([query_photo_crop(photos[p]) for p in chunk])
        for p, v in zip(chunk, vectors, strict=True):
            _QUERY_CACHE[(version, p)] = np.asarray(v, dtype=np.float32)
    if len(_QUERY_CACHE) > _QUERY_CACHE_MAX:
        _QUERY_CACHE.clear()
        return _query_vectors(photo_ids, model_ref)
    return np.stack([_QUERY_CACHE[(version, p)] for p in photo_ids])


def _metrics(
    requests: Sequence[LabelledRequest],
    gallery: Gallery,
    gallery_vectors: np.ndarray,
    model_ref: str,
    *,
    cold: bool = False,
) -> dict[str, float]:
    if not requests:
        return {"r1": 0.0, "r4": 0.0, "map_r": 0.0}
    photo_ids = [p for r in requests for p in r.photo_ids]
    vectors = _query_vectors(photo_ids, model_ref)
    labels, groups, allowed = [], [], []
    everything = np.arange(len(gallery.image_ids))
    for r in requests:
        start = len(labels)
        labels += [r.sku_id] * len(r.photo_ids)
        groups.append(list(range(start, len(labels))))
        keep = gallery.catalogue.copy() if cold else np.ones(len(everything), dtype=bool)
        keep &= np.asarray([o != r.request_id for o in gallery.origin], dtype=bool)
        allowed.append(everything[keep])
    report = evaluate_embeddings(gallery_vectors, gallery.labels, vectors,
                                 np.asarray(labels), groups, allowed=allowed)
    return {"r1": report.recall_at_1, "r4": report.recall_at_4, "map_r": report.map_at_r}


def evaluation_sets() -> tuple[list[LabelledRequest], list[LabelledRequest]]:
    """(held-out requests, replay requests: the most recent other confirmed matches)."""
    known = labelled_requests()
    holdout = [r for r in known if is_holdout(r.request_id)]
    replay = [r for r in known if not is_holdout(r.request_id)][-settings.GATE_REPLAY_LIMIT :]
    return holdout, replay


def model_figures(model_ref: str, *, progress: Progress | None = None) -> dict[str, float]:
    """Every figure the gate compares, for one model."""
    holdout, replay = evaluation_sets()
    gallery = gallery_images()
    if progress:
        progress(f"embedding the gallery ({len(gallery.image_ids)} images) with {model_ref}")
    vectors = _gallery_vectors(gallery, model_ref)
    if progress:
        progress(f"embedding {len(holdout)} held-out and {len(replay)} replay requests")
    held = _metrics(holdout, gallery, vectors, model_ref)
    cold = _metrics(holdout, gallery, vectors, model_ref, cold=True)
    again = _metrics(replay, gallery, vectors, model_ref)
    return {
        "holdout_r1": held["r1"], "holdout_r4": held["r4"], "holdout_map_r": held["map_r"],
        "holdout_cold_r1": cold["r1"], "holdout_cold_r4": cold["r4"],
        "replay_top1": again["r1"], "replay_top4": again["r4"],
    }


def gate_evaluate(*, candidate_ref: str, progress: Progress | None = None) -> GateReport:
    started = time.perf_counter()
    live_ref = live_model_ref()
    holdout, replay = evaluation_sets()
    live = model_figures(live_ref, progress=progress)
    cand = model_figures(candidate_ref, progress=progress)
    passed, reasons, checks = gate_decide(
        live, cand, holdout_queries=len(holdout), tolerance=settings.GATE_TOLERANCE,
        min_gain=settings.GATE_MIN_GAIN, min_holdout=settings.GATE_MIN_HOLDOUT,
    )
    if candidate_ref == live_ref:
        passed, reasons = False, ["this model is already live"]
    return GateReport(
        passed, reasons, checks, live_ref,
        ml_gateway.embedder(live_ref).name, ml_gateway.embedder(candidate_ref).name,
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
