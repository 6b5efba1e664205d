"""Subject isolation, the first stage of the retrieval path: detect, segment, crop."""

from __future__ import annotations

import time
from collections.abc import Sequence

from PIL import Image

from ml.interfaces import Found, ItemDetector
from ml.segment import grabcut_mask, grabcut_version, isolate
from ml.types import Box, Isolation

SEGMENTATIONS = ("grabcut", "none")


class Isolator:
    """Subject isolation: detect the item (unless the appraiser drew its box), segment it
    inside the box, and crop it onto a neutral background; the full frame when nothing is found.
    """

    def __init__(self, detector: ItemDetector | None = None, *, segmentation: str = "grabcut"):
        if segmentation not in SEGMENTATIONS:
            raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {segmentation!r}")
        self.detector = detector
        self.segmentation = segmentation

    @property
    def name(self) -> str:
        """Everything about isolation that shapes a vector."""
        found = self.detector.name if self.detector is not None else "full-frame"
        # GrabCut's own settings too: changing them changes every mask (issue 15).
        segmentation = grabcut_version() if self.segmentation == "grabcut" else self.segmentation
        return f"{found}|{segmentation}"

    def isolate(
        self,
        images: Sequence[Image.Image],
        *,
        corrected_boxes: Sequence[Box | None] | None = None,
        classes: Sequence[str] = (),
        timings: dict[str, float] | None = None,
        alone: bool = False,
    ) -> tuple[list[Image.Image], list[Isolation]]:
        """Crops and isolations, one per image; ``timings`` gets ``detect`` and ``segment`` ms.
        ``alone``: nothing else runs meanwhile (see ``ItemDetector.detect_all``)."""
        timings = {} if timings is None else timings
        boxes = list(corrected_boxes) if corrected_boxes is not None else [None] * len(images)
        if len(boxes) != len(images):
            raise ValueError("one corrected box (or None) per image")
        started = time.perf_counter()
        to_detect = [i for i, box in enumerate(boxes) if box is None]
        detections: dict[int, Found | None] = {}
        if to_detect and self.detector is not None:
            found = self.detector.detect_all([images[i] for i in to_detect], classes=classes,
                                            alone=alone)
            detections = dict(zip(to_detect, found, strict=True))
        timings["detect"] = (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        crops: list[Image.Image] = []
        isolations: list[Isolation] = []
        for i, image in enumerate(images):
            corrected, detection = boxes[i], detections.get(i)
            if corrected is not None:
                box, source, label, confidence = corrected, "corrected", "", None
            elif detection is not None:
                box, source = detection.box, "detector"
                label, confidence = detection.label, detection.confidence
                outline = detection.mask
                if outline is not None:  # a segmentation model outlined the item already
                    isolations.append(Isolation(box, source, label, confidence, outline))
                    crops.append(isolate(image, box, outline))
                    continue
            else:
                full = Box(0.0, 0.0, float(image.width), float(image.height))
                isolations.append(Isolation(full, "full_frame"))
                crops.append(image)
                continue
            mask = grabcut_mask(image, box) if self.segmentation == "grabcut" else None
            isolations.append(Isolation(box, source, label, confidence, mask))
            crops.append(isolate(image, box, mask))
        timings["segment"] = (time.perf_counter() - started) * 1000
        return crops, isolations


__all__ = ["SEGMENTATIONS", "Isolator"]
