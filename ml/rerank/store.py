"""Reference-side evidence computed when the index is built, stored and versioned with it.

For every reference image: its local features (:func:`ml.rerank.spatial.extract`), whether it
is a catalogue image (weighted more: the product as the catalogue shows it), and the words
read on it (OCR, cached so that queries never read references). Files live in
``<index version dir>/rerank/`` next to the Faiss files, so an index version and its
evidence always travel together (uploads to an artefact store included).

Layout (plain ``.npy`` files, memory-mapped on load; descriptors as uint8 RootSIFT):

    rerank/meta.json        format, feature settings, count
    rerank/ids.npy          [R] int64 reference ids, ascending
    rerank/offsets.npy      [R + 1] int64 row ranges into the keypoint arrays
    rerank/xy.npy           [N, 2] float32
    rerank/size.npy         [N] float32
    rerank/descriptors.npy  [N, 128] uint8 (RootSIFT * 255)
    rerank/colours.npy      [N, 2] float16 (a*, b*)
    rerank/image_size.npy   [R, 2] int32 (width, height)
    rerank/primary.npy      [R] bool
    rerank/words.json       {reference id: [words read on it]}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ml.rerank import spatial
from ml.rerank.types import LocalFeatures

DIRECTORY = "rerank"
FORMAT = 1
ARRAYS = ("ids", "offsets", "xy", "size", "descriptors", "colours", "image_size", "primary")


def feature_settings() -> dict[str, Any]:
    """What shapes a stored feature: a store built otherwise is rebuilt, not reused."""
    return {
        "detector": "sift-rootsift",
        "side": spatial.REFERENCE_SIDE,
        "features": spatial.REFERENCE_FEATURES,
        "colour_radius": spatial.COLOUR_RADIUS_PX,
    }


@dataclass(frozen=True)
class ReferenceEvidence:
    """What the store keeps for one reference image."""

    features: LocalFeatures
    primary: bool
    words: tuple[str, ...] = ()


def reference_evidence(
    image: Image.Image, *, primary: bool, ocr: Any | None = None
) -> ReferenceEvidence:
    """Extract one reference image's features (and words, with an :class:`OcrEngine`)."""
    features = spatial.extract(
        image, side=spatial.REFERENCE_SIDE, n_features=spatial.REFERENCE_FEATURES
    )
    words: tuple[str, ...] = ()
    if ocr is not None:
        words = tuple(w.text for w in ocr.read(image))
    return ReferenceEvidence(features, primary, words)


class ReferenceStore:
    """Reference id -> :class:`ReferenceEvidence`, backed by arrays (memory-mapped on load)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], words: Mapping[int, Sequence[str]],
                 settings: Mapping[str, Any] | None = None) -> None:
        self._a = dict(arrays)
        self._words = {int(k): tuple(v) for k, v in words.items()}
        self.settings = dict(settings or feature_settings())
        ids = self._a["ids"]
        self._row = {int(i): r for r, i in enumerate(np.asarray(ids).tolist())}

    # ----- building ------------------------------------------------------------------------

    @classmethod
    def from_evidence(cls, evidence: Mapping[int, ReferenceEvidence]) -> ReferenceStore:
        ids = np.array(sorted(evidence), dtype=np.int64)
        feats = [evidence[int(i)].features for i in ids]
        counts = np.array([len(f) for f in feats], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

        def stack(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            parts = [np.asarray(getattr(f, name)).reshape((-1, *shape)) for f in feats]
            return (np.concatenate(parts) if parts else np.zeros((0, *shape))).astype(dtype)

        arrays = {
            "ids": ids,
            "offsets": offsets,
            "xy": stack("xy", (2,), np.float32),
            "size": stack("size", (), np.float32),
            "descriptors": np.round(stack("descriptors", (128,), np.float32) * 255).astype(
                np.uint8),
            "colours": stack("colours", (2,), np.float16),
            "image_size": np.array([f.image_size for f in feats], dtype=np.int32).reshape(-1, 2),
            "primary": np.array([evidence[int(i)].primary for i in ids], dtype=bool),
        }
        words = {int(i): evidence[int(i)].words for i in ids if evidence[int(i)].words}
        return cls(arrays, words)

    def updated(
        self, *, add: Mapping[int, ReferenceEvidence], remove: Iterable[int] = ()
    ) -> ReferenceStore:
        """A new store: this one without ``remove``, with ``add`` (replacing equal ids)."""
        gone = {int(i) for i in remove} | {int(i) for i in add}
        kept = {i: self.get(i) for i in self._row if i not in gone}
        merged = {i: e for i, e in kept.items() if e is not None}
        merged.update({int(i): e for i, e in add.items()})
        return ReferenceStore.from_evidence(merged)

    # ----- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, reference_id: object) -> bool:
        return isinstance(reference_id, int | np.integer) and int(reference_id) in self._row

    def ids(self) -> np.ndarray:
        return np.asarray(self._a["ids"], dtype=np.int64)

    def is_primary(self, reference_id: int) -> bool:
        row = self._row.get(int(reference_id))
        return bool(self._a["primary"][row]) if row is not None else False

    def words(self, reference_id: int) -> tuple[str, ...]:
        return self._words.get(int(reference_id), ())

    def get(self, reference_id: int) -> ReferenceEvidence | None:
        row = self._row.get(int(reference_id))
        if row is None:
            return None
        a, b = int(self._a["offsets"][row]), int(self._a["offsets"][row + 1])
        width, height = (int(v) for v in self._a["image_size"][row])
        features = LocalFeatures(
            xy=np.asarray(self._a["xy"][a:b], dtype=np.float32),
            size=np.asarray(self._a["size"][a:b], dtype=np.float32),
            descriptors=_unit_rows(np.asarray(self._a["descriptors"][a:b], dtype=np.float32)),
            colours=np.asarray(self._a["colours"][a:b], dtype=np.float32),
            image_size=(width, height),
        )
        return ReferenceEvidence(features, bool(self._a["primary"][row]),
                                 self._words.get(int(reference_id), ()))

    # ----- persistence ---------------------------------------------------------------------

    def save(self, index_directory: str | Path) -> Path:
        """Write ``<index_directory>/rerank/`` (temp directory, then one rename)."""
        target = Path(index_directory) / DIRECTORY
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{DIRECTORY}.tmp-", dir=target.parent))
        try:
            for name in ARRAYS:
                np.save(tmp / f"{name}.npy", np.asarray(self._a[name]))
            (tmp / "words.json").write_text(
                json.dumps({str(k): list(v) for k, v in sorted(self._words.items())})
            )
            meta = {"format": FORMAT, "count": len(self), **self.settings}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{DIRECTORY}.old-", dir=target.parent))
                os.replace(target, old / "prev")
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, index_directory: str | Path) -> ReferenceStore | None:
        """The store of an index version, or None when it has none (built before re-ranking,
        or with other feature settings: then it must be rebuilt, not misread)."""
        directory = Path(index_directory) / DIRECTORY
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        settings = {k: meta.get(k) for k in feature_settings()}
        if meta.get("format") != FORMAT or settings != feature_settings():
            return None
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        words = {int(k): v for k, v in json.loads((directory / "words.json").read_text()).items()}
        store = cls(arrays, words, settings)
        if len(store) != int(meta.get("count", -1)):
            raise ValueError(f"{directory}: {len(store)} references, meta says {meta['count']}")
        return store


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: np.ndarray = x / np.maximum(norms, 1e-7)
    return out


def build_store(
    images: Mapping[int, Image.Image] | Iterable[tuple[int, Image.Image, bool]],
    *,
    ocr: Any | None = None,
) -> ReferenceStore:
    """Extract every reference's evidence: ``(id, image, primary)`` triples."""
    items = images.items() if isinstance(images, Mapping) else images
    evidence = {}
    for item in items:
        reference_id, image, *rest = item
        evidence[int(reference_id)] = reference_evidence(
            image, primary=bool(rest[0]) if rest else True, ocr=ocr
        )
    return ReferenceStore.from_evidence(evidence)


__all__ = ["DIRECTORY", "ReferenceEvidence", "ReferenceStore", "build_store", "feature_settings",
           "reference_evidence"]
