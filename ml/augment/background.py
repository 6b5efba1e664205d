"""The background transform and the foreground masks it pastes through.

When a record has no mask, :func:`heuristic_mask` guesses one without GrabCut (too slow for
per-step augmentation): if the image border is near-uniform (catalogue shots on white or grey)
the foreground is every pixel far from the border colour; otherwise it is a centred ellipse
covering the middle ~70% of the frame (photos are usually framed on the item).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter


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


__all__ = ["background", "heuristic_mask"]
