"""Query evidence kept by the crop's pixels, for callers that re-rank the same photos again.

The gate ranks every held-out request four times (with and without the appraisal photos in
the gallery, for the live model and the candidate) and every replay request twice. A query
crop's local features and OCR words do not depend on the model or the gallery, and were
about three quarters of the gate's re-ranking time; a memo computes each once per gate.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeVar

from PIL import Image

from ml.rerank.types import LocalFeatures, OcrWord

T = TypeVar("T")


class QueryEvidenceMemo:
    """Per-crop query features and OCR words, least recently used first out.

    Args:
        max_crops: crops kept per kind (a query crop's features are ~0.2 MB at the default
            400 keypoints).
    """

    def __init__(self, max_crops: int = 4096) -> None:
        self.max_crops = max_crops
        self._kept: OrderedDict[tuple[str, bytes], object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def features(
        self, crop: Image.Image, compute: Callable[[Image.Image], LocalFeatures]
    ) -> LocalFeatures:
        return self._get("features", crop, compute)

    def words(
        self, crop: Image.Image, compute: Callable[[Image.Image], Sequence[OcrWord]]
    ) -> list[OcrWord]:
        return list(self._get("words", crop, lambda c: tuple(compute(c))))

    def __len__(self) -> int:
        return len(self._kept)

    def _get(self, kind: str, crop: Image.Image, compute: Callable[[Image.Image], T]) -> T:
        key = (kind, _digest(crop))
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                self.hits += 1
                return self._kept[key]  # type: ignore[return-value]
        value = compute(crop)  # outside the lock: OCR takes tens of milliseconds
        with self._lock:
            self.misses += 1
            self._kept[key] = value
            while len(self._kept) > 2 * self.max_crops:
                self._kept.popitem(last=False)
        return value


def _digest(crop: Image.Image) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{crop.mode}:{crop.width}x{crop.height}:".encode())
    digest.update(crop.tobytes())
    return digest.digest()
