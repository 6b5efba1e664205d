"""Detection results stored per photo, the appraiser's box correction, and the YOLO export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from ml.backends.oracle import box_iou
from ml.types import Box
from tests.webapp.conftest import demo_photo_upload, logged_in, upload
from webapp import ml_gateway
from webapp.matching.decisions import DecisionError
from webapp.matching.exports import detector_dataset_export
from webapp.matching.models import MatchRequest, QueryPhoto
from webapp.matching.requests import match_request_create, query_photo_box_correct
from webapp.matching.runner import match_request_run


def _done(appraiser) -> MatchRequest:
    request = match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")])
    assert match_request_run(request_id=request.pk)
    request.refresh_from_db()
    return request


def test_every_photo_records_how_its_item_was_found(appraiser, catalogue) -> None:
    photo = _done(appraiser).photos.get()
    assert photo.box_source in (QueryPhoto.BoxSource.DETECTOR, QueryPhoto.BoxSource.FULL_FRAME)
    x0, y0, x1, y1 = photo.box
    assert 0 <= x0 < x1 <= photo.width and 0 <= y0 < y1 <= photo.height
    if photo.box_source == QueryPhoto.BoxSource.FULL_FRAME:
        assert (x0, y0, x1, y1) == (0, 0, photo.width, photo.height)


def test_corrected_box_is_segmented_and_rerun(appraiser, catalogue, settings) -> None:
    settings.SEGMENTATION = "grabcut"
    request = _done(appraiser)
    photo = request.photos.get()
    box = Box(60, 70, 400, 440)
    query_photo_box_correct(photo=photo, box=box)
    assert match_request_run(request_id=request.pk)
    photo.refresh_from_db()
    request.refresh_from_db()
    assert request.status == MatchRequest.Status.DONE
    assert photo.box_source == QueryPhoto.BoxSource.CORRECTED
    assert photo.box == [60, 70, 400, 440]
    with Image.open(photo.mask.path) as mask_image:
        mask = np.asarray(mask_image) > 0
    assert mask.shape == (photo.height, photo.width)
    assert mask.any() and not mask[:70].any() and not mask[:, :60].any()
    assert request.timings_ms["detect"] >= 0 and "segment" in request.timings_ms


def test_box_must_be_inside_the_photo_and_the_match_undecided(appraiser, catalogue) -> None:
    photo = _done(appraiser).photos.get()
    with pytest.raises(DecisionError, match="inside"):
        query_photo_box_correct(photo=photo, box=Box(0, 0, photo.width + 10, 50))
    with pytest.raises(DecisionError, match="too small"):
        query_photo_box_correct(photo=photo, box=Box(0, 0, 4, 4))


def test_box_correction_over_the_page(appraiser, catalogue) -> None:
    request = _done(appraiser)
    client = logged_in(appraiser)
    url = reverse("matching:correct_box", args=[request.pk, 0])
    response = client.post(url, {"x0": 10, "y0": 10, "x1": 300, "y1": 300})
    assert response.status_code == 302
    photo = request.photos.get()
    assert photo.box_source == QueryPhoto.BoxSource.CORRECTED


def test_corrected_boxes_export_in_yolo_format(appraiser, catalogue, tmp_path) -> None:
    request = _done(appraiser)
    photo = request.photos.get()
    query_photo_box_correct(photo=photo, box=Box(100, 50, 300, 450))
    export = detector_dataset_export(out=tmp_path)
    assert export.images == 1 and export.classes == ["item"]
    (label,) = (tmp_path / "labels").glob("*.txt")
    cls, cx, cy, w, h = label.read_text().split()
    assert cls == "0"
    assert float(cx) == pytest.approx(200 / photo.width, abs=1e-5)
    assert float(cy) == pytest.approx(250 / photo.height, abs=1e-5)
    assert float(w) == pytest.approx(200 / photo.width, abs=1e-5)
    assert float(h) == pytest.approx(400 / photo.height, abs=1e-5)
    assert (tmp_path / "images" / label.with_suffix(".jpg").name).exists()
    assert "names:" in (tmp_path / "data.yaml").read_text()


def test_detector_unavailable_falls_back_to_full_frame(appraiser, catalogue, settings) -> None:
    settings.DETECTOR_WEIGHTS = "/nonexistent/weights.tflite"
    ml_gateway.detector.cache_clear()
    try:
        photo = _done(appraiser).photos.get()
        assert photo.box_source == QueryPhoto.BoxSource.FULL_FRAME
    finally:
        ml_gateway.detector.cache_clear()


# Offline assets beside the repository (never inside it).
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
GROCERY = SHARED / "data" / "grocery"
DETECTOR_WEIGHTS = SHARED / "weights" / "yolov8n_int8.tflite"
# Grocery products whose photos show a COCO class, and that class.
GROCERY_COCO = {"Banana": "banana", "Orange": "orange", "Golden-Delicious": "apple",
                "Carrots": "carrot"}


@pytest.mark.skipif(
    not (GROCERY / "classes.csv").is_file() or not DETECTOR_WEIGHTS.is_file(),
    reason=f"grocery photos or detector weights not found under {SHARED} (offline, not in repo)",
)
def test_the_detector_finds_the_item_in_a_grocery_photo(appraiser, settings) -> None:
    """A real photo of a banana: the worker's detector boxes it, the mask stays inside the
    box, and the banana is the first candidate."""
    from webapp.catalog.bulk import catalogue_import
    from webapp.catalog.importing import grocery_rows
    from webapp.catalog.models import SKU, Category
    from webapp.learning.services import index_publish

    settings.DETECTOR_WEIGHTS = str(DETECTOR_WEIGHTS)
    settings.SEGMENTATION = "grabcut"
    ml_gateway.detector.cache_clear()
    try:
        rows = [row for row in grocery_rows(GROCERY) if row.name.replace(" ", "-") in GROCERY_COCO]
        assert not catalogue_import(rows=rows, image_root=GROCERY).errors
        for category in Category.objects.all():
            sku = SKU.objects.get(series__brand__category=category)
            category.detection_classes = [GROCERY_COCO[sku.name.replace(" ", "-")]]
            category.save()
        index_publish()
        photo_path = GROCERY / "val" / "Fruit" / "Banana" / "Banana_005.jpg"
        request = match_request_create(
            user=appraiser, uploads=[upload(photo_path.name, photo_path.read_bytes())]
        )
        assert match_request_run(request_id=request.pk)
        request.refresh_from_db()
        assert request.status == MatchRequest.Status.DONE, request.error
        photo = request.photos.get()
        assert photo.box_source == QueryPhoto.BoxSource.DETECTOR
        assert photo.detection_label == "banana" and photo.detection_confidence > 0.5
        # The reference detector's box for this photo (ultralytics + LiteRT), to within IoU 0.95.
        assert box_iou(Box(*photo.box), Box(33, 84, 173, 342)) >= 0.95
        with Image.open(photo.mask.path) as mask_image:
            mask = np.asarray(mask_image) > 0
        x0, y0, x1, y1 = photo.box
        inside = np.zeros_like(mask)
        inside[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
        # GrabCut's mask lies inside the box (on this photo it keeps the whole box).
        assert mask.any() and not (mask & ~inside).any()
        assert request.timings_ms["detect"] > 0 and request.timings_ms["segment"] > 0
        first = request.candidates.order_by("rank").first()
        assert first is not None and first.sku.name == "Banana"
    finally:
        ml_gateway.detector.cache_clear()
