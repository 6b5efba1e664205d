"""Retrieval quality on the Grocery Store Dataset, photo -> catalogue, in one table.

Every cell of issue 3's quality grid from one embedding pass per image: the 296 val photos as
queries; the gallery cold (the 81 iconic catalogue images) or warm (plus the 2,640 train photos
as confirmed references); unfiltered or restricted to the query's coarse class; 1, 2 or 3 photos
per query (consecutive val photos of one product); and each fusion strategy of `ml.fuse`, plus
query-vector averaging (`vector_mean`: a query's photo embeddings averaged and re-normalised,
then searched as one photo).
Usage:

    python bench/quality.py --grocery ../shared/data/grocery [--model PATH|NAME] [--json OUT]
        [--vectors CACHE.npz] [--image-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.datasets import ImageRecord, grocery_to_csv, read_image_csv  # noqa: E402
from ml.embed import configure_threads, embed_files, load_embedder  # noqa: E402
from ml.evaluate import allowed_per_group, evaluate_embeddings, group_queries  # noqa: E402
from ml.fuse import STRATEGIES  # noqa: E402

PHOTOS_PER_QUERY = (1, 2, 3)
COLUMNS = (*STRATEGIES, "vector_mean")


def averaged_queries(
    vectors: np.ndarray, labels: np.ndarray, groups: list[list[int]]
) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """One L2-normalised mean vector per group, as single-row groups."""
    means = np.stack([vectors[g].mean(axis=0) for g in groups]).astype(np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return means, labels[[g[0] for g in groups]], [[i] for i in range(len(groups))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grocery", type=Path, required=True, help="dataset root")
    parser.add_argument("--model", default=None, help="checkpoint or backbone (default lite0)")
    parser.add_argument("--image-size", type=int, help="embed at this input size instead")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    parser.add_argument("--json", type=Path, help="write every cell here")
    parser.add_argument("--vectors", type=Path,
                        help="embeddings .npz: reused when it is this model's, else written")
    args = parser.parse_args()
    configure_threads(args.threads or None)

    csvs = grocery_to_csv(args.grocery, Path(tempfile.mkdtemp(prefix="skulens-quality-")))
    iconic = read_image_csv(csvs["gallery_iconic.csv"])
    train = read_image_csv(csvs["train_photos.csv"])
    val = read_image_csv(csvs["val_photos.csv"])
    embedder = load_embedder(args.model, device="cpu")
    if args.image_size:
        embedder.image_size = args.image_size
        embedder.name = f"{embedder.name}@{args.image_size}px"

    started = time.perf_counter()
    sets = {"iconic": iconic, "train": train, "val": val}
    stored = np.load(args.vectors) if args.vectors and args.vectors.exists() else None
    if stored is not None and str(stored["model"]) == embedder.name and all(
        len(stored[k]) == len(v) for k, v in sets.items()
    ):
        vectors = {k: stored[k] for k in sets}
    else:
        vectors = {k: embed_files(embedder, [r.path for r in v], batch_size=32)
                   for k, v in sets.items()}
        if args.vectors:
            args.vectors.parent.mkdir(parents=True, exist_ok=True)
            np.savez(args.vectors, model=embedder.name, **vectors)
    embed_s = time.perf_counter() - started
    galleries = {
        "cold": (iconic, vectors["iconic"]),
        "warm": (iconic + train, np.concatenate([vectors["iconic"], vectors["train"]])),
    }
    labels = sorted({r.label for r in iconic + train + val})
    label_id = {label: i for i, label in enumerate(labels)}

    def ids(records: list[ImageRecord]) -> np.ndarray:
        return np.asarray([label_id[r.label] for r in records], dtype=np.int64)

    cells = []
    for gallery_name, (gallery, gallery_vectors) in galleries.items():
        for photos in PHOTOS_PER_QUERY:
            groups = group_queries(val, group_size=photos)
            if photos > 1:  # only full groups: a leftover single photo is not an n-photo query
                groups = [g for g in groups if len(g) == photos]
            for filtered in (False, True):
                allowed = (
                    allowed_per_group(gallery, val, groups, "category")[0] if filtered else None
                )
                for strategy in COLUMNS:
                    queries, query_labels, query_groups = vectors["val"], ids(val), groups
                    if strategy == "vector_mean":
                        queries, query_labels, query_groups = averaged_queries(
                            queries, query_labels, groups)
                    report = evaluate_embeddings(
                        gallery_vectors, ids(gallery), queries, query_labels, query_groups,
                        allowed=allowed,
                        strategy="best" if strategy == "vector_mean" else strategy,
                    )
                    cells.append({
                        "gallery": gallery_name, "photos": photos, "filtered": filtered,
                        "strategy": strategy, "queries": report.n_queries,
                        "recall_at_1": report.recall_at_1, "recall_at_4": report.recall_at_4,
                    })

    print(f"# retrieval quality, grocery val, {platform.node()} ({os.cpu_count()} CPU), "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"model: {embedder.name}; {sum(len(v) for v in vectors.values())} images embedded "
          f"or loaded in {embed_s:.0f} s")
    print("| gallery | photos/query | queries | filter | "
          + " | ".join(f"R@1 {s} | Top-4 {s}" for s in COLUMNS) + " |")
    print("|---|---|---|---|" + "---|---|" * len(COLUMNS))
    for gallery_name in galleries:
        for photos in PHOTOS_PER_QUERY:
            for filtered in (False, True):
                row = {c["strategy"]: c for c in cells if c["gallery"] == gallery_name
                       and c["photos"] == photos and c["filtered"] == filtered}
                first = row[COLUMNS[0]]
                print(f"| {gallery_name} | {photos} | {first['queries']} | "
                      f"{'coarse class' if filtered else 'none'} | "
                      + " | ".join(f"{row[s]['recall_at_1']:.4f} | {row[s]['recall_at_4']:.4f}"
                                   for s in COLUMNS) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": embedder.name, "cells": cells}, indent=1))


if __name__ == "__main__":
    main()
