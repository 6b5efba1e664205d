"""Reference isolations kept by content and isolator: the same crops, isolated once."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ml.types import Box
from webapp import ml_gateway
from webapp.catalog.isolations import reference_crops


@dataclass(frozen=True)
class _Found:
    box: Box
    label: str = "handbag"
    confidence: float = 0.9
    mask: np.ndarray | None = None


class _CentreDetector:
    """Finds the middle of every image, so GrabCut has a box to segment."""

    name = "centre-detector-1"

    def __init__(self) -> None:
        self.calls = 0

    def detect_all(
        self, images: Sequence[Image.Image], *, classes: Collection[str] = (),
        alone: bool = False,
    ) -> list[_Found | None]:
        self.calls += len(images)
        return [_Found(Box(im.width * 0.2, im.height * 0.2, im.width * 0.8, im.height * 0.8))
                for im in images]


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(80, 200, size=(180, 240, 3), dtype=np.uint8))
    ImageDraw.Draw(image).ellipse((70, 50, 170, 130), fill=(180, 30, 40 + seed))
    return image


@pytest.fixture
def detector(monkeypatch, settings, tmp_path) -> _CentreDetector:
    settings.ISOLATION_CACHE_DIR = tmp_path / "isolations"
    settings.SEGMENTATION = "grabcut"
    found = _CentreDetector()
    monkeypatch.setattr(ml_gateway.runtime, "detector", lambda: found)  # where isolator() looks
    return found


def _fresh(pictures: list[Image.Image]) -> list[Image.Image]:
    crops, _ = ml_gateway.isolate_items(pictures, corrected_boxes=[None] * len(pictures),
                                        classes=(), timings={})
    return crops


def test_stored_isolations_give_the_same_crops_without_isolating_again(detector) -> None:
    pictures = [_picture(1), _picture(2)]
    expected = _fresh(pictures)
    detector.calls = 0
    first = reference_crops(pictures, ["a" * 64, "b" * 64], classes=("handbag",))
    assert detector.calls == 2
    again = reference_crops(pictures, ["a" * 64, "b" * 64], classes=("handbag",))
    assert detector.calls == 2, "stored isolations are not isolated again"
    for want, got_first, got_again in zip(expected, first, again, strict=True):
        assert np.array_equal(np.asarray(want), np.asarray(got_first))
        assert np.array_equal(np.asarray(want), np.asarray(got_again))


def test_the_store_is_keyed_by_classes_and_isolator(detector, monkeypatch) -> None:
    picture = _picture(3)
    reference_crops([picture], ["c" * 64], classes=("handbag",))
    reference_crops([picture], ["c" * 64], classes=("backpack",))
    assert detector.calls == 2
    monkeypatch.setattr(detector, "name", "centre-detector-2")
    reference_crops([picture], ["c" * 64], classes=("handbag",))
    assert detector.calls == 3


def test_no_checksum_is_never_stored(detector) -> None:
    picture = _picture(4)
    reference_crops([picture], [""], classes=())
    reference_crops([picture], [""], classes=())
    assert detector.calls == 2


def test_an_unreadable_or_mismatched_store_is_isolated_again(detector, settings) -> None:
    picture = _picture(5)
    expected = _fresh([picture])[0]
    reference_crops([picture], ["d" * 64], classes=())
    for stored in settings.ISOLATION_CACHE_DIR.rglob("*.npz"):
        stored.write_bytes(b"not an archive")
    detector.calls = 0
    crop = reference_crops([picture], ["d" * 64], classes=())[0]
    assert detector.calls == 1
    assert np.array_equal(np.asarray(crop), np.asarray(expected))
    # The same checksum on a picture of another size (a changed file): isolated again.
    bigger = picture.resize((300, 225))
    reference_crops([bigger], ["d" * 64], classes=())
    assert detector.calls == 2


def test_a_store_that_cannot_be_written_costs_only_time(detector, settings) -> None:
    blocked = settings.ISOLATION_CACHE_DIR
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the folder should be")
    picture = _picture(6)
    crops = reference_crops([picture], ["e" * 64], classes=())
    assert np.array_equal(np.asarray(crops[0]), np.asarray(_fresh([picture])[0]))
