"""Subject isolation: GrabCut against a drawn shape, YOLO on the offline COCO model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ml.segment import NEUTRAL, box_mask, grabcut_mask, isolate
from ml.types import Box

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TFLITE = SHARED / "weights" / "yolov8n_int8.tflite"
GROCERY = SHARED / "data" / "grocery"


def _scene(seed: int = 0) -> tuple[Image.Image, np.ndarray, Box]:
    """A red ellipse on a textured background; returns image, true mask, loose box."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(90, 200, size=(240, 320, 3), dtype=np.uint8)
    pixels[..., 2] = np.clip(pixels[..., 2].astype(int) + 30, 0, 255)  # a bluish clutter
    image = Image.fromarray(pixels)
    truth = Image.new("L", image.size, 0)
    ellipse = (110, 60, 230, 190)
    ImageDraw.Draw(image).ellipse(ellipse, fill=(200, 20, 30))
    ImageDraw.Draw(truth).ellipse(ellipse, fill=255)
    return image, np.asarray(truth) > 0, Box(95, 45, 245, 205)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_grabcut_recovers_the_item_inside_its_box() -> None:
    image, truth, box = _scene()
    mask = grabcut_mask(image, box)
    assert mask.shape == truth.shape
    assert _iou(mask, truth) > 0.85
    assert not (mask & ~box_mask(image.size, box)).any(), "mask leaks outside the box"


def test_isolate_paints_the_background_neutral() -> None:
    image, truth, box = _scene()
    crop = isolate(image, box, truth)
    assert crop.size == (150, 160)
    pixels = np.asarray(crop)
    local_truth = truth[45:205, 95:245]
    assert (pixels[~local_truth] == NEUTRAL).all()
    assert (pixels[local_truth] == np.asarray(image)[45:205, 95:245][local_truth]).all()


def test_degenerate_box_falls_back_to_the_box_itself() -> None:
    image, _, _ = _scene()
    tiny = Box(10, 10, 12, 12)
    assert (grabcut_mask(image, tiny) == box_mask(image.size, tiny)).all()


@pytest.fixture(scope="module")
def detector():
    if not TFLITE.exists():
        pytest.skip(f"offline COCO detector not found at {TFLITE}")
    from ml.yolo import YoloDetector

    return YoloDetector(TFLITE, image_size=320)


def test_yolo_finds_an_object_in_a_real_photo(detector) -> None:
    if not GROCERY.exists():
        pytest.skip(f"grocery photos not found at {GROCERY}")
    photo = Image.open(sorted((GROCERY / "train" / "Packages").rglob("*.jpg"))[0]).convert("RGB")
    (found,) = detector.detect_all([photo])
    assert found is not None
    assert 0 <= found.box.x0 < found.box.x1 <= photo.width + 1
    assert 0 <= found.box.y0 < found.box.y1 <= photo.height + 1
    assert found.label in detector.names.values()


def test_yolo_target_classes_filter_detections(detector) -> None:
    blank = Image.new("RGB", (320, 320), (128, 128, 128))
    assert detector.detect_all([blank], classes={"handbag", "backpack", "suitcase"}) == [None]
    with pytest.raises(ValueError, match="unknown detector classes"):
        detector.detect_all([blank], classes={"unicorn"})


def test_polygon_mask_rasterises_the_outline() -> None:
    from ml.yolo import polygon_mask

    square = np.array([[10, 20], [50, 20], [50, 60], [10, 60]], dtype=np.float32)
    mask = polygon_mask([square], (80, 70))
    assert mask.shape == (70, 80)
    expected = np.zeros((70, 80), bool)
    expected[20:61, 10:51] = True  # PIL fills polygon edges inclusively
    assert (mask == expected).all()
    assert not polygon_mask([square[:2]], (80, 70)).any()  # a degenerate outline is no mask


def test_loading_the_detector_leaves_pillow_alone(detector) -> None:
    from PIL import Image as PILImage

    assert PILImage.open.__module__ == "PIL.Image"
    from ml.images import ImageDecodeError, load_rgb

    with pytest.raises(ImageDecodeError):
        load_rgb(b"definitely not an image")


def test_grabcut_gives_a_photo_the_same_mask_on_every_call() -> None:
    # Unseeded, OpenCV's k-means start moved with every earlier call (2 pixels differed here).
    scenes = [_scene(seed)[0] for seed in range(3)]
    box = Box(60, 40, 260, 200)
    first = [grabcut_mask(image, box) for image in scenes]
    again = [grabcut_mask(image, box) for image in reversed(scenes)][::-1]
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)
