"""The augmentation policy: which transforms run, how often and in what order, and how QA's
failure-cause weights become those probabilities.

Reseller artefacts (seed 001: compression, crops, scribbles) are always in the mix: ``crop``
runs on every image and ``compression_blur`` / ``scribble`` never drop below
:data:`ARTEFACT_FLOOR`, whatever the weights say.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ml.augment.background import background
from ml.augment.transforms import TRANSFORMS, random_resized_crop

TRANSFORM_NAMES = (
    "occlusion",
    "lighting",
    "colour",
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
    # Off: exposure jitter cost 0.03 cold R@1 on grocery val at the full schedule, all of it
    # on fruit varieties whose shade is their identity (docs/benchmarks.md, "Lighting A/B").
    "lighting": 0.0,
    # Off: a shifted hue or saturation is another colour variant, which is another SKU.
    "colour": 0.0,
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
    "colour": "colour",
    "color": "colour",
    "colour_cast": "colour",
    "color_cast": "colour",
    "white_balance": "colour",
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

def _normalise_cause(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")



@dataclass
class AugmentPolicy:
    """Per-transform probabilities; call it on one image to get an augmented, resized image.

    Order: background (needs the un-cropped mask) -> crop -> angle -> lighting -> colour ->
    scribble -> occlusion -> compression_blur (uploads are compressed last).

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
        # Exposure and the colour cast run only when a cause names them (see DEFAULT_PROBS).
        probs["lighting"] = probs["colour"] = 0.0
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
        for name in ("angle", "lighting", "colour", "scribble", "occlusion", "compression_blur"):
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
    "IGNORED_CAUSES",
    "TRANSFORM_NAMES",
    "AugmentPolicy",
]
