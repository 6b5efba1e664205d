"""Exact oracles for the fast runtimes: compare a candidate's output with the reference's.

Used by the oracle tests (tests/ml/test_backends.py) and by bench/inference_backends.py, so
the numbers in docs/benchmarks.md are the ones the tests hold the runtimes to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ml.types import Box


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    iw = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    ih = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = iw * ih
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class DetectionAgreement:
    """How a candidate detector's chosen boxes compare with the reference's, photo by photo.

    ``same`` counts photos where both found nothing, or both chose a box of the same label
    with IoU >= the threshold; ``differing`` lists the other photos' indices.
    """

    photos: int
    same: int
    found_reference: int
    found_candidate: int
    min_iou: float  # over photos where both found a box of the same label (1.0 if none)
    differing: list[int] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.same / self.photos if self.photos else 1.0


def compare_detections(
    reference: Sequence[tuple[Box, str] | None],
    candidate: Sequence[tuple[Box, str] | None],
    *,
    min_iou: float = 0.99,
) -> DetectionAgreement:
    """Compare per-photo (box, label) choices (None: nothing found)."""
    if len(reference) != len(candidate):
        raise ValueError("reference and candidate cover different photos")
    same, ious, differing = 0, [], []
    for i, (ref, got) in enumerate(zip(reference, candidate, strict=True)):
        if ref is None and got is None:
            same += 1
            continue
        if ref is None or got is None or ref[1] != got[1]:
            differing.append(i)
            continue
        iou = box_iou(ref[0], got[0])
        ious.append(iou)
        if iou >= min_iou:
            same += 1
        else:
            differing.append(i)
    return DetectionAgreement(
        photos=len(reference),
        same=same,
        found_reference=sum(r is not None for r in reference),
        found_candidate=sum(c is not None for c in candidate),
        min_iou=min(ious) if ious else 1.0,
        differing=differing,
    )


@dataclass(frozen=True)
class RankingAgreement:
    """Candidate embeddings against the reference's on one query set and gallery.

    ``identical_top_k`` counts queries whose top-k gallery order is identical; ``min_cosine``
    is the lowest cosine between a row's reference and candidate embedding.
    """

    queries: int
    identical_top_k: int
    same_top1: int
    min_cosine: float
    k: int

    @property
    def all_identical(self) -> bool:
        return self.identical_top_k == self.queries


def ranked_gallery(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """``[n, k]`` gallery row indices by descending cosine (ties by index), per query."""
    cos = queries @ gallery.T
    order = np.lexsort((np.broadcast_to(np.arange(gallery.shape[0]), cos.shape), -cos), axis=1)
    return order[:, :k]


def compare_rankings(
    reference_queries: np.ndarray,
    reference_gallery: np.ndarray,
    candidate_queries: np.ndarray,
    candidate_gallery: np.ndarray,
    *,
    k: int = 10,
) -> RankingAgreement:
    """Top-k gallery rankings of each query with both sets of ``[n, dim]`` unit embeddings."""
    k = min(k, reference_gallery.shape[0])
    ref = ranked_gallery(reference_queries, reference_gallery, k)
    got = ranked_gallery(candidate_queries, candidate_gallery, k)
    cosines = np.concatenate([
        np.sum(reference_queries * candidate_queries, axis=1),
        np.sum(reference_gallery * candidate_gallery, axis=1),
    ])
    return RankingAgreement(
        queries=len(ref),
        identical_top_k=int(np.all(ref == got, axis=1).sum()),
        same_top1=int((ref[:, 0] == got[:, 0]).sum()),
        min_cosine=float(cosines.min()),
        k=k,
    )


__all__ = [
    "DetectionAgreement",
    "RankingAgreement",
    "box_iou",
    "compare_detections",
    "compare_rankings",
    "ranked_gallery",
]
