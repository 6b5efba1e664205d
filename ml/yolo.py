"""Item detection with ultralytics YOLO (`.pt`, `.onnx` or `.tflite` weights).

Small COCO models confuse handbags, backpacks and suitcases with each other, so a category
names a *set* of target classes and any of them counts as the item. With internet the default
weights (`yolov8n.pt`) are downloaded by ultralytics itself; offline, point `weights` at a
local file such as `yolov8n_int8.tflite` (runs through ai-edge-litert).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ml.embed import configure_threads
from ml.types import Box

DEFAULT_WEIGHTS = "yolov8n.pt"
# COCO classes a bag can be detected as.
BAG_CLASSES = frozenset({"backpack", "handbag", "suitcase"})


@dataclass(frozen=True)
class Detection:
    box: Box
    label: str
    confidence: float
    # [height, width] bool, from a segmentation model (`-seg` weights); None for detect models.
    mask: np.ndarray | None = None


def polygon_mask(polygons: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons ([k, 2] pixel coordinates each) into a [height, width] bool mask."""
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 3:
            draw.polygon([(float(x), float(y)) for x, y in polygon], fill=255)
    return np.asarray(canvas) > 0


class YoloDetector:
    """Best box per image among the target classes; None when nothing qualifies."""

    def __init__(
        self,
        weights: str | Path = DEFAULT_WEIGHTS,
        *,
        image_size: int = 640,
        min_confidence: float = 0.15,
        min_area_share: float = 0.05,
        device: str = "cpu",
    ) -> None:
        threads = os.environ.get("OMP_NUM_THREADS")
        from ultralytics import YOLO  # imported late: it sets OMP_NUM_THREADS=1 on import
        from ultralytics.utils import patches

        # ultralytics replaces Image.open with one that pip-installs pi-heif at run time when a
        # file is not an image; ml.images registers pillow-heif itself, so put Pillow's back.
        Image.open = patches._image_open

        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = threads
        weights = str(weights)
        if weights != DEFAULT_WEIGHTS and not Path(weights).exists():
            raise FileNotFoundError(f"detector weights not found: {weights}")
        # A `-seg` model also outlines the item; it then replaces GrabCut.
        self.task = "segment" if "-seg" in Path(weights).stem else "detect"
        self.model = YOLO(weights, task=self.task)
        configure_threads()  # ultralytics' device selection sets torch to cpu_count - 1 threads
        self.names: dict[int, str] = dict(self.model.names)
        self.name = f"yolo:{Path(weights).name}"
        self.image_size = image_size
        self.min_confidence = min_confidence
        # An item photographed for appraisal fills a fair part of the frame; tiny boxes are
        # parts (a handle, a logo) and segment unstably.
        self.min_area_share = min_area_share
        self.device = device

    def detect_all(
        self, images: Sequence[Image.Image], *, classes: Collection[str] = ()
    ) -> list[Detection | None]:
        """Best detection per image whose label is in `classes` (any class when empty)."""
        if not images:
            return []
        wanted = set(classes)
        unknown = wanted - set(self.names.values())
        if unknown:
            raise ValueError(f"unknown detector classes: {sorted(unknown)}")
        results = self.model.predict(
            list(images), imgsz=self.image_size, conf=self.min_confidence,
            device=self.device, verbose=False,
        )
        configure_threads()  # the first predict selects the device again
        found: list[Detection | None] = []
        for image, result in zip(images, results, strict=True):
            best: Detection | None = None
            best_index = -1
            min_area = self.min_area_share * image.width * image.height
            boxes = getattr(result, "boxes", None)
            if boxes is None:  # not a detection model's result
                found.append(None)
                continue
            for index, (xyxy, cls, conf) in enumerate(zip(
                boxes.xyxy.tolist(), boxes.cls.tolist(), boxes.conf.tolist(), strict=True
            )):
                label = self.names[int(cls)]
                if wanted and label not in wanted:
                    continue
                if (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1]) < min_area:
                    continue
                if best is None or conf > best.confidence:
                    best, best_index = Detection(Box(*xyxy), label, float(conf)), index
            masks = getattr(result, "masks", None)
            if best is not None and masks is not None:
                outline = polygon_mask([masks.xy[best_index]], image.size)
                best = Detection(best.box, best.label, best.confidence, outline)
            found.append(best)
        return found
