"""The item crop of a query photo, rebuilt from its stored box and mask.

It is what the embedding network saw: QA judges "wrong crop" from it, and training uses it so
the model learns on the same input it gets at query time.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ml.images import load_rgb
from ml.types import Box
from webapp import ml_gateway
from webapp.matching.models import QueryPhoto


def query_photo_crop(photo: QueryPhoto, *, image: Image.Image | None = None) -> Image.Image:
    """The isolated item (box, mask, neutral background); the whole photo when none was found."""
    if image is None:
        with photo.image.open("rb") as handle:
            image = load_rgb(handle.read())
    if not photo.box or photo.box_source == QueryPhoto.BoxSource.FULL_FRAME:
        return image
    mask = None
    if photo.mask:
        with photo.mask.open("rb") as handle:
            mask_image = Image.open(io.BytesIO(handle.read())).convert("L")
        if mask_image.size == image.size:
            mask = np.asarray(mask_image) > 127
    return ml_gateway.item_crop(image, Box(*photo.box), mask)


def jpeg(image: Image.Image, *, max_side: int = 640, quality: int = 88) -> bytes:
    image = image.copy()
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
