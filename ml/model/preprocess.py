"""Evaluation preprocessing: resize modes, per-channel normalisation, ``[batch, 3, H, W]``.

Shared by the embedder (``ml.embed``), the exported runtimes (``ml.backends``) and training's
evaluation input (``ml.train.data``), so every path feeds the network the same pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

RESIZE_MODES = ("center_crop", "squash", "pad")


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``(x - mean) / std`` applied to RGB in [0, 1]."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_any(cls, value: Normalisation | Mapping[str, Any] | str) -> Normalisation:
        if isinstance(value, Normalisation):
            return value
        if isinstance(value, str):
            try:
                return NORMALISATIONS[value]
            except KeyError:
                raise ValueError(f"unknown normalisation {value!r}") from None
        mean, std = value["mean"], value["std"]
        return cls(
            name=str(value.get("name", "custom")),
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )


# (x * 255 - 127) / 128 == (x - 127/255) / (128/255): the TFLite EfficientNet-Lite convention.
LITE_NORMALISATION = Normalisation("efficientnet_lite", (127 / 255,) * 3, (128 / 255,) * 3)
IMAGENET_NORMALISATION = Normalisation("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NORMALISATIONS = {n.name: n for n in (LITE_NORMALISATION, IMAGENET_NORMALISATION)}


def resize_for_model(
    image: Image.Image, image_size: int, *, mode: str = "center_crop"
) -> Image.Image:
    """Resize one RGB image to ``image_size x image_size``.

    Modes: ``"center_crop"`` (shorter side to size, then centre crop: ImageNet evaluation),
    ``"squash"`` (ignore aspect ratio), ``"pad"`` (longer side to size, grey letterbox; keeps
    the whole object, useful after detection crops).
    """
    w, h = image.size
    if mode == "squash":
        return image.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    if mode == "center_crop":
        scale = image_size / min(w, h)
        nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
        img = image.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (nw - image_size) // 2, (nh - image_size) // 2
        return img.crop((left, top, left + image_size, top + image_size))
    if mode == "pad":
        scale = image_size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        img = image.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        canvas = Image.new("RGB", (image_size, image_size), (127, 127, 127))
        canvas.paste(img, ((image_size - nw) // 2, (image_size - nh) // 2))
        return canvas
    raise ValueError(f"unknown resize mode {mode!r}")


def to_tensor(
    images: Sequence[Image.Image], normalisation: Normalisation | Mapping[str, Any] | str
) -> torch.Tensor:
    """Stack same-size RGB images into a normalised float tensor ``[batch, 3, H, W]``."""
    norm = Normalisation.from_any(normalisation)
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess(
    images: Sequence[Image.Image],
    image_size: int,
    *,
    normalisation: Normalisation | Mapping[str, Any] | str = LITE_NORMALISATION,
    resize: str = "center_crop",
) -> torch.Tensor:
    """Deterministic evaluation preprocessing: resize, scale to [0, 1], normalise.

    The default normalisation is EfficientNet-Lite's ``(x * 255 - 127) / 128``.

    Returns:
        ``[batch, 3, image_size, image_size]`` float32.
    """
    if not images:
        return torch.empty((0, 3, image_size, image_size))
    resized = [resize_for_model(im.convert("RGB"), image_size, mode=resize) for im in images]
    return to_tensor(resized, normalisation)
