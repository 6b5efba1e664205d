"""Second stage of subject isolation: a mask inside the detected box, and a neutral background.

GrabCut (OpenCV) is seeded by the box: outside is background, inside is "probably foreground".
The crop is the box with everything outside the mask painted a neutral grey, so the embedding
sees the item and not the shop counter behind it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from ml.types import Box

NEUTRAL = (127, 127, 127)
# GrabCut's cost grows with pixels; the mask is computed on a downscaled copy. On grocery val
# photos (348 px) 192 took a median 51 ms against 236 ms at 320, with a median IoU of 0.98
# between the two masks (docs/benchmarks.md); the crop is embedded at 224 px anyway.
GRABCUT_MAX_SIDE = 192
# One iteration: on the detected grocery val items it cost 0.64x of three with the same median
# mask (IoU 1.000, p10 0.89) and val R@1 / R@4 within one / two queries; restricting GrabCut to
# the box lost both (docs/benchmarks.md, "Segmentation cost").
GRABCUT_ITERATIONS = 1
# GrabCut runs on the box grown by this share of its size on each side (inf: the whole photo).
GRABCUT_MARGIN = math.inf
# A mask covering less than this share of its box is a failed segmentation: keep the box.
MIN_MASK_SHARE = 0.15
# GrabCut starts its colour models from k-means on OpenCV's thread RNG, whose state every
# earlier call moves on: unseeded, the same photo got a slightly different mask from one call
# to the next. Seeded per call, a photo always gets the same mask (and the same vector).
GRABCUT_SEED = 0


def grabcut_version() -> str:
    """The GrabCut settings that shape a mask, for the isolation's name in a vector's version."""
    margin = "" if math.isinf(GRABCUT_MARGIN) else f",box+{GRABCUT_MARGIN:g}"
    return f"grabcut@{GRABCUT_MAX_SIDE}px,{GRABCUT_ITERATIONS}it{margin},seed{GRABCUT_SEED}"


def clamp_box(box: Box, width: int, height: int) -> Box:
    x0 = min(max(0.0, box.x0), width - 1.0)
    y0 = min(max(0.0, box.y0), height - 1.0)
    x1 = min(max(x0 + 1.0, box.x1), float(width))
    y1 = min(max(y0 + 1.0, box.y1), float(height))
    return Box(x0, y0, x1, y1)


def grabcut_mask(
    image: Image.Image,
    box: Box,
    *,
    max_side: int | None = None,
    iterations: int | None = None,
    margin: float | None = None,
) -> np.ndarray:
    """Foreground mask [height, width] bool of the whole image, True inside the item.

    Args:
        max_side: the photo is downscaled to this longer side first (default GRABCUT_MAX_SIDE).
        iterations: GrabCut iterations (default GRABCUT_ITERATIONS).
        margin: GrabCut sees only the box grown by this share of its size on each side
            (default GRABCUT_MARGIN; inf = the whole downscaled photo): its cost follows the
            pixels it is given, and the ring outside the box is its background model.
    """
    max_side = max_side or GRABCUT_MAX_SIDE
    iterations = iterations or GRABCUT_ITERATIONS
    margin = GRABCUT_MARGIN if margin is None else margin
    box = clamp_box(box, image.width, image.height)
    scale = min(1.0, max_side / max(image.width, image.height))
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    pixels = cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2BGR)
    rect = (
        int(box.x0 * scale),
        int(box.y0 * scale),
        max(1, int(box.width * scale)),
        max(1, int(box.height * scale)),
    )
    # The region GrabCut runs on: the whole downscaled photo, or the box plus a margin.
    x0, y0, x1, y1 = 0, 0, pixels.shape[1], pixels.shape[0]
    if math.isfinite(margin):
        grow_x, grow_y = round(rect[2] * margin), round(rect[3] * margin)
        x0, y0 = max(0, rect[0] - grow_x), max(0, rect[1] - grow_y)
        x1 = min(pixels.shape[1], rect[0] + rect[2] + grow_x)
        y1 = min(pixels.shape[0], rect[1] + rect[3] + grow_y)
    region = np.ascontiguousarray(pixels[y0:y1, x0:x1])
    local_rect = (rect[0] - x0, rect[1] - y0, rect[2], rect[3])
    mask = np.zeros(region.shape[:2], np.uint8)
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(GRABCUT_SEED)  # this thread's RNG only
    try:
        cv2.grabCut(region, mask, local_rect, background_model, foreground_model,
                    iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        # Degenerate boxes (a few pixels, or the whole frame) give GrabCut nothing to learn.
        return box_mask(image.size, box)
    small_mask = np.zeros(pixels.shape[:2], np.uint8)
    small_mask[y0:y1, x0:x1] = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8) * 255
    full = Image.fromarray(small_mask).resize(image.size, Image.Resampling.NEAREST)
    result = np.asarray(full) > 0
    inside = box_mask(image.size, box)
    if result.sum() < MIN_MASK_SHARE * inside.sum():
        return inside
    out: np.ndarray = result & inside
    return out


def box_mask(size: tuple[int, int], box: Box) -> np.ndarray:
    width, height = size
    mask = np.zeros((height, width), bool)
    mask[int(box.y0) : int(np.ceil(box.y1)), int(box.x0) : int(np.ceil(box.x1))] = True
    return mask


def isolate(image: Image.Image, box: Box, mask: np.ndarray | None) -> Image.Image:
    """The box's crop with pixels outside `mask` set to a neutral grey."""
    box = clamp_box(box, image.width, image.height)
    bounds = (int(box.x0), int(box.y0), int(np.ceil(box.x1)), int(np.ceil(box.y1)))
    cropped = image.crop(bounds)
    if mask is None:
        return cropped
    local = mask[bounds[1] : bounds[3], bounds[0] : bounds[2]]
    background = Image.new("RGB", cropped.size, NEUTRAL)
    return Image.composite(cropped, background, Image.fromarray(local.astype(np.uint8) * 255))
