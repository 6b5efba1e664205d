"""Augmentation policy: weights from failure causes, determinism, transform effects."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from ml.augment import (
    ARTEFACT_FLOOR,
    TRANSFORM_NAMES,
    TRANSFORMS,
    AugmentPolicy,
    background,
    heuristic_mask,
)


def _packshot(size: int = 96) -> Image.Image:
    """A red box on a white studio background."""
    arr = np.full((size, size, 3), 255, dtype=np.uint8)
    arr[size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = (200, 30, 30)
    return Image.fromarray(arr)


def _photo(size: int = 96) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_from_cause_weights_scales_and_keeps_artefacts() -> None:
    policy = AugmentPolicy.from_cause_weights(
        {"Occlusion": 10, "compression/blur": 5, "catalogue gap": 99}, base=0.1, top=0.9
    )
    p = policy.probs
    assert p["occlusion"] == pytest.approx(0.9)
    assert p["compression_blur"] == pytest.approx(0.1 + 0.8 * 0.5)
    assert p["angle"] == pytest.approx(0.1)
    assert p["lighting"] == 0.0 and p["colour"] == 0.0  # only when a cause names them
    assert p["crop"] == 1.0
    assert p["scribble"] >= ARTEFACT_FLOOR["scribble"]  # reseller artefacts never vanish
    assert set(p) == set(TRANSFORM_NAMES)


def test_wrong_crop_widens_crop_scale_and_unknown_cause_fails() -> None:
    assert AugmentPolicy.from_cause_weights({"wrong crop": 1}).crop_scale[0] < 0.45
    with pytest.raises(ValueError, match="unknown failure cause"):
        AugmentPolicy.from_cause_weights({"gremlins": 1})
    with pytest.raises(ValueError):
        AugmentPolicy(64, probs={"teleport": 1.0})


def test_artefact_floor_applies_even_when_zeroed() -> None:
    p = AugmentPolicy(64, probs={name: 0.0 for name in TRANSFORM_NAMES}).probs
    for name, floor in ARTEFACT_FLOOR.items():
        assert p[name] == floor


def test_policy_output_size_and_determinism() -> None:
    policy = AugmentPolicy(48, probs={name: 1.0 for name in TRANSFORM_NAMES})
    img = _packshot()
    a = policy(img, random.Random(5), background_pool=[_photo()])
    b = policy(img, random.Random(5), background_pool=[_photo()])
    c = policy(img, random.Random(6), background_pool=[_photo()])
    assert a.size == (48, 48) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_each_transform_changes_the_image(name: str) -> None:
    img = _packshot()
    out = TRANSFORMS[name](img, None, random.Random(1))
    assert out.size == img.size and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(img))


def test_heuristic_mask_on_a_packshot_finds_the_box() -> None:
    img = _packshot()
    mask = heuristic_mask(img)
    assert mask.shape == (96, 96)
    assert mask[48, 48] > 0.9  # inside the box
    assert mask[5, 5] < 0.1  # white border


def test_heuristic_mask_falls_back_to_centre_ellipse() -> None:
    mask = heuristic_mask(_photo())  # busy border: no uniform background
    assert mask[48, 48] == 1.0 and mask[0, 0] == 0.0


def test_background_replacement_keeps_foreground() -> None:
    img = _packshot()
    out = np.asarray(background(img, None, random.Random(3), [_photo()]))
    src = np.asarray(img)
    assert np.array_equal(out[48, 48], src[48, 48])  # the product stays
    assert not np.array_equal(out[:8, :8], src[:8, :8])  # the white studio background goes


def test_lighting_adds_no_colour_cast_and_colour_does() -> None:
    grey = Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))
    for seed in range(10):
        lit = np.asarray(TRANSFORMS["lighting"](grey, None, random.Random(seed))).astype(int)
        assert (lit[..., 0] == lit[..., 1]).all() and (lit[..., 1] == lit[..., 2]).all()
    cast = np.asarray(TRANSFORMS["colour"](grey, None, random.Random(0))).astype(int)
    assert np.abs(cast[..., 0] - cast[..., 2]).max() > 0


def test_colour_cast_is_off_unless_asked_for() -> None:
    assert AugmentPolicy(64).probs["colour"] == 0.0
    assert AugmentPolicy.from_cause_weights({"occlusion": 3, "lighting": 1}).probs["colour"] == 0.0
    asked = AugmentPolicy.from_cause_weights({"white balance": 2, "occlusion": 2}).probs
    assert asked["colour"] == pytest.approx(0.8)
