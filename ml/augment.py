"""Training augmentation: named transforms with weights, aimed at the failure causes QA tags.

Each named transform maps to a cause of the bad-case taxonomy (MISSION row 10):

=================  ===================================================================
name               what it does
=================  ===================================================================
occlusion          random erasing: 1-3 rectangles filled with noise or a flat colour
lighting           colour jitter (brightness, contrast, saturation, hue) and gamma (exposure)
angle              perspective warp and rotation
background         background replacement through a foreground mask
compression_blur   JPEG re-encoding at low quality and Gaussian blur
scribble           strokes and text drawn over the image
crop               random resized crop (the "wrong crop" cause)
=================  ===================================================================

Reseller artefacts (seed 001: compression, crops, scribbles) are always in the mix: ``crop``
runs on every image and ``compression_blur`` / ``scribble`` never drop below
:data:`ARTEFACT_FLOOR`, whatever the weights say.

Background masks: when a record has no mask, :func:`heuristic_mask` guesses one without
GrabCut (too slow for per-step augmentation): if the image border is near-uniform (catalogue
shots on white or grey) the foreground is every pixel far from the border colour; otherwise
it is a centred ellipse covering the middle ~70% of the frame (photos are usually framed on
the item).
"""

from __future__ import annotations

import io
import logging
import math
import random
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

log = logging.getLogger(__name__)

TRANSFORM_NAMES = (
    "occlusion",
    "lighting",
    "angle",
    "background",
    "compression_blur",
    "scribble",
    "crop",
)
# Reseller artefacts that are always possible, whatever the cause weights.
ARTEFACT_FLOOR = {"compression_blur": 0.2, "scribble": 0.15}
DEFAULT_PROBS = {
    "occlusion": 0.25,
    "lighting": 0.5,
    "angle": 0.3,
    "background": 0.3,
    "compression_blur": 0.3,
    "scribble": 0.2,
    "crop": 1.0,
}
# Failure-cause spellings used by the review queue and people -> transform name.
CAUSE_ALIASES = {
    "occlusion": "occlusion",
    "occluded": "occlusion",
    "lighting": "lighting",
    "light": "lighting",
    "exposure": "lighting",
    "angle": "angle",
    "viewpoint": "angle",
    "perspective": "angle",
    "background": "background",
    "compression_blur": "compression_blur",
    "compression": "compression_blur",
    "blur": "compression_blur",
    "jpeg": "compression_blur",
    "scribble": "scribble",
    "scribbles": "scribble",
    "text": "scribble",
    "text_overlay": "scribble",
    "scribbles_or_text_overlay": "scribble",
    "scribbles_text": "scribble",
    "wrong_crop": "crop",
    "crop": "crop",
}
# Causes no augmentation can help with (e.g. a SKU missing from the catalogue).
IGNORED_CAUSES = {"catalogue_gap", "catalog_gap", "other", "none", ""}

Transform = Callable[[Image.Image, "np.ndarray | None", random.Random], Image.Image]


def _normalise_cause(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


# ----- masks --------------------------------------------------------------------------------


def heuristic_mask(image: Image.Image, *, border: int = 4, tolerance: float = 40.0) -> np.ndarray:
    """Foreground guess ``[H, W]`` float32 in [0, 1] without GrabCut (see the module doc).

    Args:
        image: RGB image.
        border: width in pixels of the frame used to estimate the background colour.
        tolerance: RGB distance from the border colour above which a pixel is foreground.
    """
    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = arr.shape[:2]
    edge = np.concatenate(
        [arr[:border].reshape(-1, 3), arr[-border:].reshape(-1, 3)]
        + [arr[:, :border].reshape(-1, 3), arr[:, -border:].reshape(-1, 3)]
    )
    colour = np.median(edge, axis=0)
    spread = float(np.median(np.abs(edge - colour).sum(axis=1)))
    if spread < tolerance / 2:
        # Near-uniform border: a studio / catalogue shot.
        dist = np.abs(arr - colour).sum(axis=2)
        mask = (dist > tolerance).astype(np.float32)
        if 0.05 < mask.mean() < 0.95:
            soft = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(5))
            soft = soft.filter(ImageFilter.GaussianBlur(2))
            return np.asarray(soft, dtype=np.float32) / 255.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ry, rx = 0.42 * h, 0.42 * w
    d = ((yy - (h - 1) / 2) / ry) ** 2 + ((xx - (w - 1) / 2) / rx) ** 2
    # Soft edge so the paste does not draw a sharp ellipse the network could key on.
    out: np.ndarray = np.clip((1.15 - d) / 0.3, 0.0, 1.0).astype(np.float32)
    return out


def _random_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A flat colour, a linear gradient or coloured noise, ``size`` = (W, H)."""
    w, h = size
    kind = rng.random()
    if kind < 0.3:
        colour = tuple(rng.randrange(256) for _ in range(3))
        return Image.new("RGB", size, colour)
    nprng = np.random.default_rng(rng.randrange(2**32))
    if kind < 0.65:
        a, b = nprng.uniform(0, 255, 3), nprng.uniform(0, 255, 3)
        t = np.linspace(0, 1, h if rng.random() < 0.5 else w, dtype=np.float32)
        ramp = a[None, :] * (1 - t[:, None]) + b[None, :] * t[:, None]
        arr = ramp[:, None, :].repeat(w, 1) if len(t) == h else ramp[None].repeat(h, 0)
        return Image.fromarray(arr.astype(np.uint8))
    small = nprng.uniform(0, 255, (max(2, h // 16), max(2, w // 16), 3)).astype(np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


# ----- transforms (PIL RGB in, PIL RGB out) -------------------------------------------------


def occlusion(image: Image.Image, mask: np.ndarray | None, rng: random.Random) -> Image.Image:
    """Random erasing: 1-3 rectangles of 2-15% of the area each, noise or a flat colour."""
    arr = np.array(image)
    h, w = arr.shape[:2]
    nprng = np.random.default_rng(rng.randrange(2**32))
    for _ in range(rng.randint(1, 3)):
        area = rng.uniform(0.02, 0.15) * h * w
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        eh = min(h, max(1, int(round(math.sqrt(area * aspect)))))
        ew = min(w, max(1, int(round(math.sqrt(area / aspect)))))
        y, x = rng.randrange(h - eh + 1), rng.randrange(w - ew + 1)
        if rng.random() < 0.5:
            arr[y : y + eh, x : x + ew] = nprng.integers(0, 256, (eh, ew, 3), dtype=np.uint8)
        else:
            arr[y : y + eh, x : x + ew] = [rng.randrange(256) for _ in range(3)]
    return Image.fromarray(arr)


def lighting(image: Image.Image, mask: np.ndarray | None, rng: random.Random) -> Image.Image:
    """Brightness/contrast/saturation jitter, a small hue shift and a gamma (exposure) change."""
    ops: list[Callable[[Image.Image], Image.Image]] = [
        lambda im: ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4)),
        lambda im: ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 1.4)),
        lambda im: ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.4)),
    ]
    rng.shuffle(ops)
    for op in ops:
        image = op(image)
    arr = np.asarray(image, dtype=np.float32) / 255.0
    gamma = math.exp(rng.uniform(-0.4, 0.4))
    tint = np.array([rng.uniform(0.9, 1.1) for _ in range(3)], dtype=np.float32)  # white balance
    arr = np.clip(arr**gamma * tint, 0.0, 1.0)
    return Image.fromarray((arr * 255).astype(np.uint8))


def _perspective_coeffs(
    src: Sequence[tuple[float, float]], dst: Sequence[tuple[float, float]]
) -> np.ndarray:
    """Coefficients for ``Image.transform(PERSPECTIVE)`` mapping output ``dst`` to input ``src``."""
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    a, b = np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64)
    out: np.ndarray = np.linalg.solve(a, b)
    return out


def angle(image: Image.Image, mask: np.ndarray | None, rng: random.Random) -> Image.Image:
    """A random perspective warp (corners moved by up to 20%) and a rotation of up to 20 deg."""
    w, h = image.size
    fill = tuple(int(c) for c in np.asarray(image).reshape(-1, 3).mean(0))
    d = 0.2
    corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
    # Each corner moves inward by up to 20% of the side: a view from an angle.
    moved = [
        (
            x + (1 if x == 0 else -1) * rng.uniform(0, d) * w,
            y + (1 if y == 0 else -1) * rng.uniform(0, d) * h,
        )
        for x, y in corners
    ]
    coeffs = _perspective_coeffs(corners, moved)
    out = image.transform(
        (w, h),
        Image.Transform.PERSPECTIVE,
        tuple(coeffs),
        Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return out.rotate(rng.uniform(-20, 20), Image.Resampling.BILINEAR, fillcolor=fill)


def background(
    image: Image.Image,
    mask: np.ndarray | None,
    rng: random.Random,
    pool: Sequence[Image.Image] = (),
) -> Image.Image:
    """Paste the foreground (``mask`` or :func:`heuristic_mask`) onto a new background.

    The new background is a random crop of an image from ``pool`` when given (e.g. other
    training photos, which look like real shop shelves) or a synthetic one.
    """
    if mask is None:
        mask = heuristic_mask(image)
    w, h = image.size
    if pool and rng.random() < 0.7:
        src = pool[rng.randrange(len(pool))]
        sw, sh = src.size
        side = int(min(sw, sh) * rng.uniform(0.4, 1.0))
        x, y = rng.randrange(sw - side + 1), rng.randrange(sh - side + 1)
        bg = src.crop((x, y, x + side, y + side)).resize((w, h), Image.Resampling.BILINEAR)
    else:
        bg = _random_background((w, h), rng)
    if mask.shape != (h, w):
        mask = (
            np.asarray(
                Image.fromarray((mask * 255).astype(np.uint8)).resize((w, h)), dtype=np.float32
            )
            / 255.0
        )
    alpha = mask[..., None]
    out = np.asarray(image, dtype=np.float32) * alpha + np.asarray(bg, dtype=np.float32) * (
        1 - alpha
    )
    return Image.fromarray(out.astype(np.uint8))


def compression_blur(
    image: Image.Image, mask: np.ndarray | None, rng: random.Random
) -> Image.Image:
    """JPEG re-encoding at quality 10-60 and/or a Gaussian blur of radius 0.5-2 px."""
    mode = rng.random()
    if mode < 0.7:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=rng.randint(10, 60))
        buf.seek(0)
        image = Image.open(buf).convert("RGB")
    if mode > 0.4:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    return image


_WORDS = ("SOLD", "sale", "OK", "ref", "new", "50%", "#12", "fake?", "price", "NWT", "<3")


def scribble(image: Image.Image, mask: np.ndarray | None, rng: random.Random) -> Image.Image:
    """Strokes (1-4 polylines) and/or a short text, as resellers draw on product photos."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    w, h = image.size
    if rng.random() < 0.75:
        for _ in range(rng.randint(1, 4)):
            pts = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(rng.randint(2, 5))]
            colour = tuple(rng.randrange(256) for _ in range(3))
            draw.line(pts, fill=colour, width=rng.randint(1, max(2, w // 40)), joint="curve")
    if rng.random() < 0.6:
        text = (
            rng.choice(_WORDS)
            if rng.random() < 0.6
            else "".join(
                rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(2, 8))
            )
        )
        font = ImageFont.load_default(size=rng.randint(max(8, h // 14), max(9, h // 5)))
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.text((rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.85)), text, fill=colour, font=font)
    return image


def random_resized_crop(
    image: Image.Image,
    size: int,
    rng: random.Random,
    *,
    scale: tuple[float, float] = (0.45, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """torchvision-style RandomResizedCrop to ``size x size``."""
    w, h = image.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return image.resize((size, size), Image.Resampling.BILINEAR, box=(x, y, x + cw, y + ch))
    side = min(w, h)
    x, y = (w - side) // 2, (h - side) // 2
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(x, y, x + side, y + side))


TRANSFORMS: dict[str, Transform] = {
    "occlusion": occlusion,
    "lighting": lighting,
    "angle": angle,
    "compression_blur": compression_blur,
    "scribble": scribble,
}


# ----- the policy ---------------------------------------------------------------------------


@dataclass
class AugmentPolicy:
    """Per-transform probabilities; call it on one image to get an augmented, resized image.

    Order: background (needs the un-cropped mask) -> crop -> angle -> lighting -> scribble ->
    occlusion -> compression_blur (uploads are compressed last).

    Attributes:
        image_size: output side in pixels.
        probs: transform name -> probability in [0, 1] (see :data:`TRANSFORM_NAMES`).
        crop_scale: area range of the random crop; "wrong crop" weight widens it.
    """

    image_size: int
    probs: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PROBS))
    crop_scale: tuple[float, float] = (0.45, 1.0)

    def __post_init__(self) -> None:
        unknown = set(self.probs) - set(TRANSFORM_NAMES)
        if unknown:
            raise ValueError(f"unknown transform(s) {sorted(unknown)}; known: {TRANSFORM_NAMES}")
        probs = {name: float(self.probs.get(name, 0.0)) for name in TRANSFORM_NAMES}
        for name, floor in ARTEFACT_FLOOR.items():
            probs[name] = max(probs[name], floor)
        self.probs = {k: min(1.0, max(0.0, v)) for k, v in probs.items()}

    @classmethod
    def from_cause_weights(
        cls,
        weights: Mapping[str, float],
        *,
        image_size: int = 224,
        base: float = 0.15,
        top: float = 0.8,
    ) -> AugmentPolicy:
        """Policy from QA failure-cause weights (e.g. bad-case counts per cause).

        A cause's probability is ``base + (top - base) * w / max(w)``; causes without weight
        get ``base``. Cause names are matched loosely (``"Compression/blur"``,
        ``"scribbles or text overlay"``, ``"wrong crop"`` ...); ``catalogue_gap`` is ignored.
        ``wrong crop`` widens the crop scale instead of changing a probability.

        Raises:
            ValueError: a negative weight or a cause that matches no transform.
        """
        merged: dict[str, float] = {}
        for raw, value in weights.items():
            cause = _normalise_cause(raw)
            if cause in IGNORED_CAUSES:
                continue
            if cause not in CAUSE_ALIASES:
                raise ValueError(f"unknown failure cause {raw!r}; known: {sorted(CAUSE_ALIASES)}")
            if value < 0:
                raise ValueError(f"negative weight for {raw!r}")
            name = CAUSE_ALIASES[cause]
            merged[name] = merged.get(name, 0.0) + float(value)
        peak = max(merged.values(), default=0.0)
        probs = {name: base for name in TRANSFORM_NAMES}
        for name, value in merged.items():
            if peak > 0:
                probs[name] = base + (top - base) * value / peak
        probs["crop"] = 1.0
        crop_lo = 0.45 - 0.25 * (merged.get("crop", 0.0) / peak if peak else 0.0)
        return cls(image_size=image_size, probs=probs, crop_scale=(crop_lo, 1.0))

    def __call__(
        self,
        image: Image.Image,
        rng: random.Random,
        *,
        mask: np.ndarray | None = None,
        background_pool: Sequence[Image.Image] = (),
    ) -> Image.Image:
        """Augment one RGB image; returns ``image_size x image_size`` RGB."""
        p = self.probs
        if rng.random() < p["background"]:
            image = background(image, mask, rng, background_pool)
        image = random_resized_crop(image, self.image_size, rng, scale=self.crop_scale)
        for name in ("angle", "lighting", "scribble", "occlusion", "compression_blur"):
            if rng.random() < p[name]:
                image = TRANSFORMS[name](image, None, rng)
        return image

    def describe(self) -> str:
        """One line for logs: ``name=p`` pairs."""
        return " ".join(f"{k}={v:.2f}" for k, v in self.probs.items())


__all__ = [
    "ARTEFACT_FLOOR",
    "CAUSE_ALIASES",
    "DEFAULT_PROBS",
    "TRANSFORMS",
    "TRANSFORM_NAMES",
    "AugmentPolicy",
    "angle",
    "background",
    "compression_blur",
    "heuristic_mask",
    "lighting",
    "occlusion",
    "random_resized_crop",
    "scribble",
]
