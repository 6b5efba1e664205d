"""Training data: CSV rows -> items with roles, attributes and known negatives; an in-memory
image cache; a per-label hold-out split; batch assembly with seeded augmentation.

CSV columns (same format as ``python -m ml evaluate``): ``path,label`` plus optional
``category``, ``brand``, ``series`` and other attribute columns, ``role`` (``catalogue`` /
``photo``, default photo) and ``negatives`` (labels known to be wrong, separated by ``|``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ml.augment import AugmentPolicy, heuristic_mask
from ml.datasets import read_image_csv, write_image_csv
from ml.images import load_rgb
from ml.losses import MISSING
from ml.model import Normalisation, resize_for_model, to_tensor
from ml.sampling import CATALOGUE

DEFAULT_ATTRIBUTES = ("category", "brand", "series")
NON_ATTRIBUTE_COLUMNS = {"role", "negatives", "description_path", "group"}


@dataclass(frozen=True)
class TrainItem:
    """One training image."""

    path: Path
    label: str
    role: str = "photo"
    attrs: Mapping[str, str] = field(default_factory=dict)
    negatives: tuple[str, ...] = ()

    @property
    def category(self) -> str | None:
        return self.attrs.get("category") or None


def read_training_csv(path: str | Path, *, role: str | None = None) -> list[TrainItem]:
    """Read a training CSV; ``role`` overrides the role of every row (e.g. ``"catalogue"``)."""
    items = []
    for rec in read_image_csv(path):
        attrs = dict(rec.attrs)
        row_role = role or (attrs.pop("role", "") or "photo").lower()
        attrs.pop("role", None)
        negatives = tuple(x.strip() for x in attrs.pop("negatives", "").split("|") if x.strip())
        items.append(TrainItem(rec.path, rec.label, row_role, attrs, negatives))
    return items


def choose_attributes(items: Sequence[TrainItem], requested: Sequence[str] | None) -> list[str]:
    """Attribute columns to use: ``requested`` or the default ones present with some value."""
    if requested:
        return list(requested)
    return [a for a in DEFAULT_ATTRIBUTES if any(it.attrs.get(a) for it in items)]


def encode_attributes(
    items: Sequence[TrainItem], names: Sequence[str]
) -> tuple[torch.Tensor, dict[str, list[str]]]:
    """``[n, n_attr]`` long codes (:data:`MISSING` for empty) and each attribute's values."""
    vocab: dict[str, list[str]] = {}
    codes = torch.full((len(items), len(names)), MISSING, dtype=torch.long)
    for k, name in enumerate(names):
        values = sorted({it.attrs.get(name, "") for it in items} - {""})
        vocab[name] = values
        index = {v: i for i, v in enumerate(values)}
        for i, it in enumerate(items):
            v = it.attrs.get(name, "")
            if v:
                codes[i, k] = index[v]
    return codes, vocab


def split_holdout(
    items: Sequence[TrainItem], fraction: float, *, seed: int = 0
) -> tuple[list[TrainItem], list[TrainItem]]:
    """Hold out ``fraction`` of each label's photos (at least 1 photo stays in training).

    Catalogue images always stay in training: they are the gallery of the hold-out check.
    """
    if fraction <= 0:
        return list(items), []
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if it.role != CATALOGUE:
            by_label.setdefault(it.label, []).append(i)
    held: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label][:]
        rng.shuffle(idx)
        n = min(len(idx) - 1, int(round(fraction * len(idx))))
        held.update(idx[: max(0, n)])
    return [it for i, it in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


class ImageCache:
    """Decoded RGB images kept in memory, shorter side resized to ``side`` (decode once).

    Masks for background replacement are computed once per image with
    :func:`ml.augment.heuristic_mask`.
    """

    def __init__(self, side: int) -> None:
        self.side = side
        self._images: dict[Path, Image.Image] = {}
        self._masks: dict[Path, np.ndarray] = {}

    def get(self, path: Path) -> Image.Image:
        img = self._images.get(path)
        if img is None:
            img = load_rgb(path)
            w, h = img.size
            scale = self.side / min(w, h)
            if scale < 1:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
            self._images[path] = img
        return img

    def mask(self, path: Path) -> np.ndarray:
        m = self._masks.get(path)
        if m is None:
            m = heuristic_mask(self.get(path))
            self._masks[path] = m
        return m

    def warm(self, paths: Iterable[Path]) -> int:
        """Decode every path now; returns the number of images cached."""
        for p in paths:
            self.get(p)
        return len(self._images)


class BatchMaker:
    """Turns item indices into an augmented ``[batch, 3, S, S]`` tensor, deterministically.

    Each image gets its own ``random.Random`` seeded by ``(seed, epoch, step, slot)``, so a
    run repeats exactly whatever the order of work.
    """

    def __init__(
        self,
        items: Sequence[TrainItem],
        cache: ImageCache,
        policy: AugmentPolicy,
        normalisation: Normalisation,
        *,
        seed: int = 0,
        background_pool_size: int = 256,
        resize: str = "center_crop",
    ) -> None:
        self.items = items
        self.cache = cache
        self.policy = policy
        self.normalisation = normalisation
        self.seed = seed
        self.resize = resize
        photos = [it.path for it in items if it.role != CATALOGUE]
        rng = random.Random(seed)
        pool_paths = rng.sample(photos, min(background_pool_size, len(photos)))
        # Shop-shelf backgrounds for catalogue packshots: crops of real training photos.
        self.background_pool = [cache.get(p) for p in pool_paths]

    def make(self, indices: Sequence[int], *, epoch: int, step: int) -> torch.Tensor:
        images = []
        for slot, i in enumerate(indices):
            rng = random.Random(f"{self.seed}/{epoch}/{step}/{slot}")
            item = self.items[i]
            image = self.cache.get(item.path)
            mask = self.cache.mask(item.path) if self.policy.probs["background"] > 0 else None
            images.append(self.policy(image, rng, mask=mask, background_pool=self.background_pool))
        return to_tensor(images, self.normalisation)

    def make_views(self, indices: Sequence[int], views: Sequence[int]) -> torch.Tensor:
        """Fixed views for the trunk cache: view 0 is the clean evaluation input, view
        ``v > 0`` an augmentation seeded by ``(seed, item, v)``."""
        images = []
        for i, v in zip(indices, views, strict=True):
            item = self.items[i]
            image = self.cache.get(item.path)
            if v == 0:
                images.append(resize_for_model(image, self.policy.image_size, mode=self.resize))
                continue
            rng = random.Random(f"{self.seed}/view/{i}/{v}")
            mask = self.cache.mask(item.path) if self.policy.probs["background"] > 0 else None
            images.append(self.policy(image, rng, mask=mask, background_pool=self.background_pool))
        return to_tensor(images, self.normalisation)


def eval_tensor(
    images: Sequence[Image.Image], image_size: int, normalisation: Normalisation, resize: str
) -> torch.Tensor:
    """Deterministic evaluation input ``[n, 3, S, S]`` (as ml.model.preprocess)."""
    return to_tensor(
        [resize_for_model(im, image_size, mode=resize) for im in images], normalisation
    )


def write_grocery_training_csv(csv_dir: str | Path, out: str | Path) -> int:
    """Combine ``python -m ml grocery-csv`` output into one training CSV.

    Rows: the iconic images (``role=catalogue``) and the train photos (``role=photo``), with
    attributes ``category`` (coarse class), ``department`` (Fruit / Vegetables / Packages, from
    the folder) and ``brand`` (first word of a package's name; empty for produce, which
    exercises attribute masking). Val photos are never included.
    """
    csv_dir = Path(csv_dir)
    rows = []
    for name, role in (("gallery_iconic.csv", CATALOGUE), ("train_photos.csv", "photo")):
        for rec in read_image_csv(csv_dir / name):
            parts = rec.path.parts
            anchor = "iconic-images-and-descriptions" if role == CATALOGUE else "train"
            dept = parts[parts.index(anchor) + 1] if anchor in parts else ""
            brand = rec.label.split("-")[0] if dept == "Packages" else ""
            rows.append(
                {
                    "path": str(rec.path),
                    "label": rec.label,
                    "category": rec.category or "",
                    "department": dept,
                    "brand": brand,
                    "role": role,
                }
            )
    columns = ("path", "label", "category", "department", "brand", "role")
    return write_image_csv(out, rows, columns)


__all__ = [
    "BatchMaker",
    "ImageCache",
    "TrainItem",
    "choose_attributes",
    "encode_attributes",
    "eval_tensor",
    "read_training_csv",
    "split_holdout",
    "write_grocery_training_csv",
]
