"""Reference images' isolations (box and mask), kept on disk by content and isolator.

On CPU, isolating a reference (detection and GrabCut) is about nine tenths of embedding it,
and it does not depend on the embedding model. The gate embeds the gallery with two models
and the promotion after it embeds the catalogue again. With this store each reference is
isolated once per isolator, and every later embedding rebuilds the same crop from the stored
box and mask (`ml_gateway.item_crop`, pixel for pixel what `isolate_items` returns).

A file that cannot be read or does not fit its image is isolated again, and a store that
cannot be written (a full disk) only costs the next isolation: this is a cache, never the
record of anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import astuple
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from ml.types import Box, Isolation
from webapp import ml_gateway

logger = logging.getLogger(__name__)


def reference_crops(
    pictures: Sequence[Image.Image], checksums: Sequence[str], *, classes: Sequence[str]
) -> list[Image.Image]:
    """Each picture's item crop, as `ml_gateway.isolate_items` makes it; isolates only the
    pictures whose (content checksum, isolator, detector classes) has no stored isolation.
    An empty checksum is never stored."""
    if len(pictures) != len(checksums):
        raise ValueError("one checksum per picture")
    isolator_name = ml_gateway.isolation_name()
    crops: list[Image.Image | None] = []
    todo: list[int] = []
    for i, (picture, checksum) in enumerate(zip(pictures, checksums, strict=True)):
        path = _path(isolator_name, classes, checksum) if checksum else None
        stored = _load(path, picture) if path is not None else None
        if stored is None:
            todo.append(i)
            crops.append(None)
        else:
            crops.append(_crop(picture, stored))
    if todo:
        fresh, isolations = ml_gateway.isolate_items(
            [pictures[i] for i in todo], corrected_boxes=[None] * len(todo), classes=classes,
            timings={},
        )
        for i, crop, isolation in zip(todo, fresh, isolations, strict=True):
            crops[i] = crop
            if checksums[i]:
                _save(_path(isolator_name, classes, checksums[i]), isolation)
    return [c for c in crops if c is not None]


def _path(isolator_name: str, classes: Sequence[str], checksum: str) -> Path:
    key = hashlib.sha256(
        "\n".join([isolator_name, ",".join(classes), checksum]).encode()
    ).hexdigest()[:40]
    return Path(settings.ISOLATION_CACHE_DIR) / key[:2] / f"{key}.npz"


def _crop(picture: Image.Image, isolation: Isolation) -> Image.Image:
    if isolation.source == "full_frame":
        return picture
    return ml_gateway.item_crop(picture, isolation.box, isolation.mask)


def _load(path: Path, picture: Image.Image) -> Isolation | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            box = Box(*(float(v) for v in stored["box"]))
            source = str(stored["source"])
            shape = tuple(int(v) for v in stored["mask_shape"])
            mask = None
            if shape:
                if shape != (picture.height, picture.width):
                    return None
                count = shape[0] * shape[1]
                mask = np.unpackbits(stored["mask"], count=count).astype(bool).reshape(shape)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("isolation store %s unreadable, isolating again: %s", path, exc)
        return None
    return Isolation(box, source, mask=mask)


def _save(path: Path, isolation: Isolation) -> None:
    mask = isolation.mask
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(
                    out,
                    box=np.asarray(astuple(isolation.box), dtype=np.float64),
                    source=np.asarray(isolation.source),
                    mask_shape=np.asarray(mask.shape if mask is not None else (), np.int64),
                    mask=np.packbits(mask.ravel()) if mask is not None
                    else np.zeros(0, np.uint8),
                )
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        logger.warning("isolation store %s not written: %s", path, exc)
