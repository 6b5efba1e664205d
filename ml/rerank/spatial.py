"""Spatial verification: local features, ratio-test matches, MAGSAC homography, colour check.

A global embedding confuses near-identical products; a printed logo, a label or a clasp seen
in both images at geometrically consistent positions does not. For each (query crop,
reference) pair this module counts the correspondences that one homography explains
(:func:`verify_geometry`), then how many of those also agree in colour: brand variants share
their artwork and differ in colour, and SIFT sees only grey levels, so raw inlier counts
rank the wrong variant as often as the right one.

Reference features are extracted once, when the index is built (:mod:`ml.rerank.store`);
the query's at match time, on the crop that was embedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ml.rerank.types import LocalFeatures, RegionBox

# Images are resized so that their longer side is this many pixels before SIFT (which
# doubles the image internally); 256 kept the packages' text and logos at 1/3 of the cost of
# the 348-px originals (docs/benchmarks.md, "Re-ranking with evidence").
QUERY_SIDE = 256
REFERENCE_SIDE = 320
QUERY_FEATURES = 400
REFERENCE_FEATURES = 500
RATIO = 0.8  # Lowe's ratio test
# MAGSAC++ threshold in pixels at QUERY_SIDE resolution, iterations and confidence.
REPROJECTION_PX = 6.0
MAGSAC_ITERATIONS = 500
MAGSAC_CONFIDENCE = 0.995
MIN_MATCHES = 8  # fewer ratio-test matches: no homography is tried, 0 inliers
# Local colour agreement: a*b* distance (CIELAB units) below which an inlier pair agrees,
# with a linear fall-off to 0 at twice that.
COLOUR_TOLERANCE = 12.0
COLOUR_RADIUS_PX = 3
MAX_DRAWN_MATCHES = 40
# Inliers closer than this share of the image's longer side belong to one key part.
PART_LINK = 0.12
MAX_PARTS = 3


def _resized(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    if abs(scale - 1.0) < 1e-3:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


_sift: dict[int, Any] = {}


def _detector(n_features: int) -> Any:
    if n_features not in _sift:
        _sift[n_features] = getattr(cv2, "SIFT_create")(nfeatures=n_features)  # noqa: B009
    return _sift[n_features]


def extract(
    image: Image.Image, *, side: int = QUERY_SIDE, n_features: int = QUERY_FEATURES
) -> LocalFeatures:
    """SIFT keypoints with RootSIFT descriptors and local a*b* colour.

    Args:
        image: RGB, any size; resized to ``side`` pixels on its longer side first.
        side: working resolution; the returned points are scaled back to ``image``'s pixels.
        n_features: keypoints kept (strongest first).

    Returns:
        :class:`LocalFeatures` with ``xy`` in pixels of ``image``.
    """
    rgb = image.convert("RGB")
    work = _resized(rgb, side)
    pixels = np.asarray(work)
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    keypoints, descriptors = _detector(n_features).detectAndCompute(grey, None)
    scale = rgb.width / work.width
    if descriptors is None or not keypoints:
        return LocalFeatures(
            np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
            np.zeros((0, 128), np.float32), np.zeros((0, 2), np.float32), rgb.size,
        )
    xy = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    size = np.array([kp.size for kp in keypoints], dtype=np.float32)
    root = descriptors.astype(np.float32)
    root /= np.maximum(root.sum(axis=1, keepdims=True), 1e-7)  # RootSIFT (Arandjelovic 2012)
    root = np.sqrt(root)
    colours = sample_ab(pixels, xy)
    return LocalFeatures(xy * scale, size * scale, root, colours, rgb.size)


def sample_ab(pixels: np.ndarray, xy: np.ndarray, radius: int = COLOUR_RADIUS_PX) -> np.ndarray:
    """Mean CIELAB a*, b* in a ``(2 radius + 1)`` square around each point.

    Args:
        pixels: ``[h, w, 3]`` uint8 RGB.
        xy: ``[n, 2]`` points in those pixels.

    Returns:
        ``[n, 2]`` float32 (a*, b*), each in about [-128, 127].
    """
    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB).astype(np.float32)
    ab = lab[..., 1:] - 128.0
    size = 2 * radius + 1
    blurred = cv2.blur(ab, (size, size))
    h, w = ab.shape[:2]
    cols = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    out: np.ndarray = blurred[rows, cols].astype(np.float32)
    return out


def ratio_matches(
    query: np.ndarray, references: Sequence[np.ndarray], *, ratio: float = RATIO
) -> list[np.ndarray]:
    """Lowe ratio-test matches of ``query`` descriptors into each reference, in one product.

    Args:
        query: ``[n, d]`` L2-normalised descriptors.
        references: per reference ``[m_j, d]`` L2-normalised descriptors.

    Returns:
        Per reference ``[p_j, 2]`` int (query row, reference row) pairs.
    """
    empty = np.zeros((0, 2), np.int64)
    if len(query) == 0 or not references:
        return [empty for _ in references]
    sizes = [len(r) for r in references]
    stacked = np.concatenate([r for r in references if len(r)] or [query[:0]])
    # Squared distance of unit vectors = 2 - 2 cos: one GEMM for every reference, laid out
    # [reference keypoints, query keypoints] so that each reference is a contiguous block.
    sims = stacked @ query.T
    cols = np.arange(len(query))
    out: list[np.ndarray] = []
    start = 0
    for m in sizes:
        block = sims[start : start + m]
        start += m
        if m < 2:
            out.append(empty)
            continue
        best = block.argmax(axis=0)  # [n] nearest reference keypoint per query keypoint
        s1 = block[best, cols]
        masked = block.copy()
        masked[best, cols] = -np.inf
        s2 = masked.max(axis=0)
        d1 = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * s1))
        d2 = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * s2))
        rows = np.flatnonzero(d1 < ratio * d2)
        # One reference keypoint serves one query keypoint: keep its closest.
        order = rows[np.argsort(-s1[rows], kind="stable")]
        _, first_use = np.unique(best[order], return_index=True)
        rows = np.sort(order[first_use])
        out.append(np.stack([rows, best[rows]], axis=1).astype(np.int64))
    return out


@dataclass(frozen=True)
class Geometry:
    """A homography mapping query points to reference points, and which pairs it explains."""

    homography: np.ndarray | None  # [3, 3] float64
    inliers: np.ndarray  # [p] bool

    @property
    def count(self) -> int:
        return int(self.inliers.sum())


def reprojection_errors(homography: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``||H src - dst||`` per pair, in pixels: ``src``, ``dst`` ``[p, 2]`` -> ``[p]``."""
    ones = np.ones((len(src), 1))
    projected = np.hstack([src, ones]) @ homography.T
    w = projected[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = projected[:, :2] / w
    err = np.linalg.norm(xy - dst, axis=1)
    return np.where(np.isfinite(err) & (np.abs(w[:, 0]) > 1e-12), err, np.inf)


def verify_geometry(
    src: np.ndarray,
    dst: np.ndarray,
    *,
    threshold: float = REPROJECTION_PX,
    min_matches: int = MIN_MATCHES,
    seed: int = 0,
) -> Geometry:
    """Fit a homography ``src -> dst`` with MAGSAC++ and count the pairs it explains.

    The inliers are recounted with the returned homography and ``threshold`` (MAGSAC++
    marginalises over thresholds and reports its own mask), so that the count is the plain,
    checkable ``#{i : ||H src_i - dst_i|| < threshold}``.

    Args:
        src: ``[p, 2]`` query points.
        dst: ``[p, 2]`` reference points, same order.
        threshold: reprojection error (pixels of ``dst``) below which a pair is an inlier.
        min_matches: with fewer pairs no homography is fitted (0 inliers).
        seed: OpenCV's RNG seed, so a given input always gives the same answer.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    none = Geometry(None, np.zeros(len(src), bool))
    if len(src) < max(4, min_matches):
        return none
    cv2.setRNGSeed(seed)
    homography, _mask = cv2.findHomography(
        src, dst, cv2.USAC_MAGSAC, threshold, maxIters=MAGSAC_ITERATIONS,
        confidence=MAGSAC_CONFIDENCE,
    )
    if homography is None or not np.all(np.isfinite(homography)):
        return none
    if not _plausible(homography):
        return none
    inliers = reprojection_errors(homography, src, dst) < threshold
    return Geometry(homography, inliers)


def _plausible(homography: np.ndarray) -> bool:
    """Reject homographies that fold, mirror or squash the image (degenerate fits)."""
    a = homography[:2, :2] / (homography[2, 2] if abs(homography[2, 2]) > 1e-12 else 1.0)
    det = float(np.linalg.det(a))
    if det <= 0:
        return False
    singular = np.linalg.svd(a, compute_uv=False)
    return bool(singular[1] > 1e-6 and singular[0] / singular[1] < 8.0 and 1 / 16 < det < 16)


def colour_agreement(query_ab: np.ndarray, reference_ab: np.ndarray) -> np.ndarray:
    """Per inlier pair, 1 when the a*b* colours agree within :data:`COLOUR_TOLERANCE`,
    falling linearly to 0 at twice it: ``[p, 2]`` x ``[p, 2]`` -> ``[p]`` in [0, 1]."""
    distance = np.linalg.norm(np.asarray(query_ab) - np.asarray(reference_ab), axis=1)
    out: np.ndarray = np.clip(2.0 - distance / COLOUR_TOLERANCE, 0.0, 1.0)
    return out


def key_parts(points: np.ndarray, image_size: tuple[int, int]) -> list[RegionBox]:
    """Group inlier points into regions (single linkage at :data:`PART_LINK` of the longer
    side), largest first, at most :data:`MAX_PARTS`; singletons are dropped."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) < 2:
        return []
    link = PART_LINK * max(image_size)
    parent = list(range(len(points)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = np.linalg.norm(points[:, None] - points[None], axis=2) < link
    for i, j in zip(*np.nonzero(np.triu(close, 1)), strict=True):
        parent[root(int(i))] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(points)):
        groups.setdefault(root(i), []).append(i)
    parts = []
    pad = 0.02 * max(image_size)
    for members in sorted(groups.values(), key=len, reverse=True):
        if len(members) < 2:
            continue
        p = points[members]
        parts.append(RegionBox(
            float(max(0.0, p[:, 0].min() - pad)), float(max(0.0, p[:, 1].min() - pad)),
            float(min(image_size[0], p[:, 0].max() + pad)),
            float(min(image_size[1], p[:, 1].max() + pad)), len(members),
        ))
    return parts[:MAX_PARTS]


__all__ = [
    "COLOUR_TOLERANCE",
    "MAX_DRAWN_MATCHES",
    "MIN_MATCHES",
    "QUERY_SIDE",
    "REFERENCE_SIDE",
    "REPROJECTION_PX",
    "Geometry",
    "colour_agreement",
    "extract",
    "key_parts",
    "ratio_matches",
    "reprojection_errors",
    "sample_ab",
    "verify_geometry",
]
