"""Spatial verification: hand-computed homography oracles, ratio test against loops, colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from ml.rerank import spatial

# A hand-written homography: scale 1.2, rotation 10 degrees, shift (12, -7), mild perspective.
ANGLE = np.deg2rad(10.0)
H_TRUE = np.array(
    [
        [1.2 * np.cos(ANGLE), -1.2 * np.sin(ANGLE), 12.0],
        [1.2 * np.sin(ANGLE), 1.2 * np.cos(ANGLE), -7.0],
        [2e-4, -1e-4, 1.0],
    ]
)


def apply(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.hstack([points, np.ones((len(points), 1))]) @ h.T
    return p[:, :2] / p[:, 2:3]


def test_reprojection_error_by_hand():
    h = np.array([[2.0, 0.0, 5.0], [0.0, 2.0, -3.0], [0.0, 0.0, 1.0]])
    src = np.array([[1.0, 1.0], [0.0, 0.0], [10.0, 4.0]])
    dst = np.array([[7.0, -1.0], [5.0, 0.0], [25.0, 5.0]])  # exact, 3 px off in y, exact
    np.testing.assert_allclose(spatial.reprojection_errors(h, src, dst), [0.0, 3.0, 0.0])


def test_inlier_count_matches_the_hand_computed_homography(rng):
    src = rng.uniform(10, 240, size=(60, 2))
    dst = apply(H_TRUE, src)
    # 40 exact correspondences, 20 moved 40-80 px away in a random direction: outliers.
    outliers = np.arange(40, 60)
    angle = rng.uniform(0, 2 * np.pi, size=len(outliers))
    dst[outliers] += rng.uniform(40, 80, size=(len(outliers), 1)) * np.stack(
        [np.cos(angle), np.sin(angle)], axis=1
    )
    geometry = spatial.verify_geometry(src, dst)
    oracle = spatial.reprojection_errors(H_TRUE, src, dst) < spatial.REPROJECTION_PX
    assert oracle.sum() == 40
    assert geometry.count == 40
    np.testing.assert_array_equal(geometry.inliers, oracle)
    h = geometry.homography / geometry.homography[2, 2]
    corners = np.array([[0, 0], [256, 0], [256, 256], [0, 256]], dtype=np.float64)
    assert np.abs(apply(h, corners) - apply(H_TRUE, corners)).max() < 0.05


def test_too_few_matches_give_no_homography():
    src = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5]], dtype=np.float64)
    geometry = spatial.verify_geometry(src, src + 1.0)
    assert geometry.count == 0 and geometry.homography is None


def test_a_mirrored_fit_is_rejected():
    src = np.random.default_rng(3).uniform(0, 200, size=(30, 2))
    mirror = np.array([[-1.0, 0.0, 200.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert spatial.verify_geometry(src, apply(mirror, src)).count == 0


def brute_ratio_matches(query: np.ndarray, reference: np.ndarray, ratio: float) -> set:
    """The ratio test with loops: nearest and second nearest by L2 distance, then one
    query keypoint per reference keypoint (the most similar)."""
    kept = {}
    for i, q in enumerate(query):
        d = np.sqrt(((reference - q) ** 2).sum(axis=1))
        order = np.argsort(d, kind="stable")
        if d[order[0]] < ratio * d[order[1]]:
            j = int(order[0])
            if j not in kept or d[order[0]] < kept[j][1]:
                kept[j] = (i, d[order[0]])
    return {(i, j) for j, (i, _) in kept.items()}


def test_ratio_matches_against_loops(rng):
    def unit(n):
        x = rng.standard_normal((n, 32)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    query = unit(60)
    references = [unit(40), unit(1), unit(0)]
    # Plant near-copies so the ratio test keeps some, two of them on one reference point.
    references[0][:10] = query[:10] + 0.05 * unit(10)
    references[0][:10] /= np.linalg.norm(references[0][:10], axis=1, keepdims=True)
    query[50] = references[0][3] * 0.999 + 0.001 * query[50]
    query[50] /= np.linalg.norm(query[50])
    found = spatial.ratio_matches(query, references, ratio=0.8)
    assert {tuple(p) for p in found[0].tolist()} == brute_ratio_matches(query, references[0], 0.8)
    assert len(found[0]) >= 9
    assert found[1].shape == (0, 2) and found[2].shape == (0, 2)


def textured(seed: int = 0, size: int = 320) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (235, 230, 220))
    draw = ImageDraw.Draw(image)
    for _ in range(70):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(4, 22)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            draw.rectangle([x - r, y - r / 2, x + r, y + r / 2], fill=colour)
    return image


def test_warped_image_is_verified_and_its_homography_recovered():
    reference = textured()
    pixels = np.asarray(reference)
    warped = cv2.warpPerspective(pixels, H_TRUE, (320, 320), borderValue=(235, 230, 220))
    query = Image.fromarray(warped)
    q = spatial.extract(query, side=320, n_features=500)
    r = spatial.extract(reference, side=320, n_features=500)
    (pairs,) = spatial.ratio_matches(q.descriptors, [r.descriptors])
    # query -> reference is the inverse of the warp
    geometry = spatial.verify_geometry(q.xy[pairs[:, 0]], r.xy[pairs[:, 1]], threshold=3.0)
    assert geometry.count >= 40
    h = geometry.homography / geometry.homography[2, 2]
    inverse = np.linalg.inv(H_TRUE)
    corners = np.array([[60, 60], [260, 60], [260, 260], [60, 260]], dtype=np.float64)
    assert np.abs(apply(h, corners) - apply(inverse / inverse[2, 2], corners)).max() < 3.0
    inliers = pairs[geometry.inliers]
    agree = spatial.colour_agreement(q.colours[inliers[:, 0]], r.colours[inliers[:, 1]])
    assert agree.mean() > 0.8  # same colours

    # The same artwork in other colours: the geometry holds, the colours do not.
    recoloured = Image.fromarray(np.asarray(query)[..., ::-1].copy())
    c = spatial.extract(recoloured, side=320, n_features=500)
    (pairs2,) = spatial.ratio_matches(c.descriptors, [r.descriptors])
    geometry2 = spatial.verify_geometry(c.xy[pairs2[:, 0]], r.xy[pairs2[:, 1]], threshold=3.0)
    assert geometry2.count >= 20
    inliers2 = pairs2[geometry2.inliers]
    agree2 = spatial.colour_agreement(c.colours[inliers2[:, 0]], r.colours[inliers2[:, 1]])
    assert agree2.mean() < agree.mean() - 0.3


def test_colour_agreement_falls_off_linearly():
    a = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    tol = spatial.COLOUR_TOLERANCE
    b = np.array([[0.0, 0.0], [tol, 0.0], [1.5 * tol, 0.0], [0.0, 3 * tol]])
    np.testing.assert_allclose(spatial.colour_agreement(a, b), [1.0, 1.0, 0.5, 0.0])


def test_key_parts_are_clusters_of_inliers():
    left = np.array([[10, 10], [14, 12], [12, 18], [16, 16]], dtype=np.float64)
    right = np.array([[200, 150], [205, 152], [203, 158]], dtype=np.float64)
    lonely = np.array([[120, 250]], dtype=np.float64)
    parts = spatial.key_parts(np.vstack([left, right, lonely]), (256, 256))
    assert [p.inliers for p in parts] == [4, 3]
    assert parts[0].x0 <= 10 and parts[0].x1 >= 16 and parts[0].x1 < 40
    assert parts[1].x0 > 150


def test_extract_scales_points_back_to_the_image(rng):
    image = textured(1, size=640)
    features = spatial.extract(image, side=256, n_features=300)
    assert features.image_size == (640, 640)
    assert 50 < len(features) <= 300
    assert features.xy.max() > 300  # in pixels of the 640-px image, not of the 256-px copy
    np.testing.assert_allclose(np.linalg.norm(features.descriptors, axis=1), 1.0, atol=1e-5)


def test_empty_image_has_no_features():
    features = spatial.extract(Image.new("RGB", (100, 80), (128, 128, 128)))
    assert len(features) == 0 and features.descriptors.shape == (0, 128)
    assert spatial.ratio_matches(features.descriptors, [features.descriptors])[0].shape == (0, 2)


@pytest.mark.parametrize("n", [0, 3])
def test_key_parts_of_few_points(n):
    assert spatial.key_parts(np.zeros((n, 2)) if n == 0 else np.array([[0, 0], [100, 100],
                                                                         [200, 0]]),
                             (256, 256)) == []
