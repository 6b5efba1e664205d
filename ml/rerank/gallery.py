"""A gallery / query CSV pair as the re-ranking stage sees it: the catalogue (each SKU's text
from its gallery rows), the reference store (local features of every gallery row, words read
on the catalogue images, as an index publish extracts them) and the embeddings.

The gallery CSV is the catalogue: each row a reference image (``role=photo`` rows are
appraisal photos, every other row a catalogue image, weighted more by spatial verification),
its label the SKU, and the SKU's text from the first of its rows that has ``name`` /
``description`` (or a ``description_path`` file), ``category``, ``brand``, ``series``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ml.datasets import ImageRecord
from ml.images import load_rgb
from ml.rerank import spatial
from ml.rerank.store import ReferenceEvidence, ReferenceStore, reference_evidence
from ml.rerank.types import CatalogueEntry, LocalFeatures, OcrWord


def catalogue_from_gallery(
    gallery: Sequence[ImageRecord], label_id: Mapping[str, int]
) -> dict[int, CatalogueEntry]:
    """SKU id -> its text, from the first gallery row of each label that carries it."""
    entries: dict[int, CatalogueEntry] = {}
    for rec in gallery:
        sku = label_id[rec.label]
        old = entries.get(sku)
        description = rec.get("description") or ""
        path = rec.get("description_path")
        if not description and path and Path(path).is_file():
            description = " ".join(Path(path).read_text(encoding="utf-8").split())
        entry = CatalogueEntry(
            sku_id=sku,
            name=rec.get("name") or rec.label.replace("-", " "),
            category=rec.get("category") or "",
            brand=rec.get("brand") or "",
            series=rec.get("series") or "",
            description=description,
            attributes={k: v for k, v in rec.attrs.items()
                        if k in ("colour", "material", "size", "department") and v},
        )
        if old is None or (not old.description and entry.description):
            entries[sku] = entry
    return entries


def is_primary(rec: ImageRecord) -> bool:
    """A catalogue image (not an appraisal photo added to the gallery)."""
    return (rec.get("role") or "catalogue") != "photo"


def build_reference_store(
    gallery: Sequence[ImageRecord], *, ocr: Any | None, progress: bool = False
) -> ReferenceStore:
    """Features of every gallery row (id = row number), words of the catalogue images."""
    evidence: dict[int, ReferenceEvidence] = {}
    rows = range(len(gallery))
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="reference features", leave=False)
    for i in rows:
        rec = gallery[i]
        primary = is_primary(rec)
        evidence[i] = reference_evidence(
            load_rgb(rec.path), primary=primary, ocr=ocr if primary else None
        )
    return ReferenceStore.from_evidence(evidence)


@dataclass
class Prepared:
    """Embeddings, labels, reference store and catalogue of one gallery / query pair, plus
    per-query-row caches of local features and OCR words (filled on first use)."""

    gallery: Sequence[ImageRecord]
    queries: Sequence[ImageRecord]
    gallery_vectors: np.ndarray
    query_vectors: np.ndarray
    gallery_labels: np.ndarray
    query_labels: np.ndarray
    store: ReferenceStore
    catalogue: dict[int, CatalogueEntry]
    sku_references: dict[int, list[int]]
    query_features: dict[int, LocalFeatures] = field(default_factory=dict)
    query_words: dict[str, list[OcrWord]] = field(default_factory=dict)  # by image hash

    def features_of(self, row: int) -> LocalFeatures:
        if row not in self.query_features:
            self.query_features[row] = spatial.extract(self.image(row))
        return self.query_features[row]

    def image(self, row: int) -> Image.Image:
        return load_rgb(self.queries[row].path)


def prepare(
    gallery: Sequence[ImageRecord],
    queries: Sequence[ImageRecord],
    embedder: Any,
    *,
    ocr: Any | None,
    batch_size: int = 32,
    progress: bool = False,
    vectors: tuple[np.ndarray, np.ndarray] | None = None,
    store: ReferenceStore | None = None,
) -> Prepared:
    """Embed (unless ``vectors`` are given) and extract the references' evidence (unless a
    ``store`` is given; ``ocr`` reads the catalogue images then)."""
    from ml.embed import embed_files

    labels = sorted({r.label for r in gallery} | {r.label for r in queries})
    label_id = {lab: i for i, lab in enumerate(labels)}
    if vectors is None:
        vectors = (
            embed_files(embedder, [r.path for r in gallery], batch_size=batch_size,
                        progress=progress),
            embed_files(embedder, [r.path for r in queries], batch_size=batch_size,
                        progress=progress),
        )
    sku_references: dict[int, list[int]] = {}
    for i, rec in enumerate(gallery):
        sku_references.setdefault(label_id[rec.label], []).append(i)
    return Prepared(
        gallery=gallery,
        queries=queries,
        gallery_vectors=vectors[0],
        query_vectors=vectors[1],
        gallery_labels=np.array([label_id[r.label] for r in gallery], dtype=np.int64),
        query_labels=np.array([label_id[r.label] for r in queries], dtype=np.int64),
        store=store if store is not None else build_reference_store(gallery, ocr=ocr,
                                                                     progress=progress),
        catalogue=catalogue_from_gallery(gallery, label_id),
        sku_references=sku_references,
    )


__all__ = ["Prepared", "build_reference_store", "catalogue_from_gallery", "is_primary", "prepare"]
