"""Subject isolation: find the item in a photo before embedding it.

Only the full-frame fallback lives here for now; a YOLO detector (and segmentation) will
implement the same :class:`Detector` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from PIL import Image

from ml.types import Box


@runtime_checkable
class Detector(Protocol):
    """Finds the main item in each image."""

    name: str

    def detect(self, images: Sequence[Image.Image]) -> list[Box | None]:
        """One box per image in its pixel coordinates, or None when nothing was found
        (callers then use the full frame)."""
        ...


class FullFrameDetector:
    """The fallback: the whole image is the item."""

    name = "full-frame"

    def detect(self, images: Sequence[Image.Image]) -> list[Box | None]:
        return [Box(0.0, 0.0, float(im.width), float(im.height)) for im in images]


def crop(image: Image.Image, box: Box | None) -> Image.Image:
    """Crop ``image`` to ``box`` (clamped to the image); the full image when ``box`` is None."""
    if box is None:
        return image
    x0, y0 = max(0, round(box.x0)), max(0, round(box.y0))
    x1, y1 = min(image.width, round(box.x1)), min(image.height, round(box.y1))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image
    return image.crop((x0, y0, x1, y1))


__all__ = ["Detector", "FullFrameDetector", "crop"]
