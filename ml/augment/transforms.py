"""The per-image transforms (PIL RGB in, PIL RGB out), each aimed at a failure cause QA tags:
occlusion, lighting, colour cast, angle, compression and blur, scribbles, and the random
resized crop.
The background transform lives in :mod:`.background`."""

from __future__ import annotations

import io
import math
import random
import string
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

Transform = Callable[[Image.Image, "np.ndarray | None", random.Random], Image.Image]


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
    """Exposure: brightness and contrast jitter and a gamma change, the same for every channel,
    so it adds no colour cast; a colour variant is its own SKU (:func:`colour` casts)."""
    ops: list[Callable[[Image.Image], Image.Image]] = [
        lambda im: ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4)),
        lambda im: ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 1.4)),
    ]
    rng.shuffle(ops)
    for op in ops:
        image = op(image)
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = np.clip(arr ** math.exp(rng.uniform(-0.4, 0.4)), 0.0, 1.0)
    return Image.fromarray((arr * 255).astype(np.uint8))


def colour(image: Image.Image, mask: np.ndarray | None, rng: random.Random) -> Image.Image:
    """Colour cast: saturation jitter and a white-balance tint of up to 10% a channel."""
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    arr = np.asarray(image, dtype=np.float32) / 255.0
    tint = np.array([rng.uniform(0.9, 1.1) for _ in range(3)], dtype=np.float32)
    return Image.fromarray((np.clip(arr * tint, 0.0, 1.0) * 255).astype(np.uint8))


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
    "colour": colour,
    "angle": angle,
    "compression_blur": compression_blur,
    "scribble": scribble,
}


__all__ = [
    "TRANSFORMS",
    "Transform",
    "angle",
    "colour",
    "compression_blur",
    "lighting",
    "occlusion",
    "random_resized_crop",
    "scribble",
]
