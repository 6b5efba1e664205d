"""Images to metrics: embed a gallery and queries (optionally isolating each item first, as
the app does), compute :mod:`ml.evaluate.metrics` unfiltered and filtered, and print them;
``python -m ml evaluate``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.datasets import ImageRecord, read_image_csv
from ml.evaluate.metrics import allowed_per_group, group_queries, query_outcomes, report_from
from ml.fuse import DEFAULT_STRATEGY
from ml.retrieval import DEFAULT_SEARCH_DEPTH, Isolator, RetrievalConfig
from ml.types import EvalReport


@dataclass(frozen=True)
class EvalResult:
    """Reports for one run; ``filtered`` only when a filter column was given."""

    model: str
    unfiltered: EvalReport
    filtered: EvalReport | None = None
    filter_column: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # Per query group (unfiltered), the labels of the fused ranking, best first.
    rankings: list[list[str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "unfiltered": self.unfiltered.to_dict()}
        if self.filtered is not None:
            out["filtered"] = self.filtered.to_dict()
            out["filter_column"] = self.filter_column
        out["seconds"] = round(self.seconds, 3)
        out.update(self.extra)
        return out


def embed_records(
    embedder: Any,
    records: Sequence[ImageRecord],
    *,
    isolator: Isolator | None = None,
    detection_classes: Sequence[str] = (),
    batch_size: int = 32,
    progress: bool = False,
) -> np.ndarray:
    """``[n, dim]`` embeddings of the records' images; with an ``isolator``, of their item crops
    (detected among ``detection_classes`` and segmented exactly as the app isolates queries and
    references)."""
    from ml.embed import embed_files
    from ml.images import load_rgb

    paths = [r.path for r in records]
    if isolator is None:
        return embed_files(embedder, paths, batch_size=batch_size, progress=progress)
    out = []
    for start in range(0, len(paths), batch_size):
        images = [load_rgb(p) for p in paths[start : start + batch_size]]
        crops, _ = isolator.isolate(images, classes=detection_classes)
        out.append(embedder.embed(crops, batch_size=batch_size))
    return np.concatenate(out) if out else np.zeros((0, embedder.dim), np.float32)


def evaluate(
    gallery: Sequence[ImageRecord],
    queries: Sequence[ImageRecord],
    embedder: Any,
    *,
    filter_column: str | None = None,
    group_size: int | None = None,
    full_groups: bool = False,
    strategy: str = DEFAULT_STRATEGY,
    search_depth: int = DEFAULT_SEARCH_DEPTH,
    isolator: Isolator | None = None,
    detection_classes: Sequence[str] = (),
    batch_size: int = 32,
    progress: bool = False,
) -> EvalResult:
    """Embed gallery and query images with ``embedder`` (an :class:`ml.embed.Embedder`) and
    compute the metrics, unfiltered and, with ``filter_column``, restricted per query to the
    gallery rows with the same value in that column. ``isolator`` (optional) isolates every
    image's item first, as the app does. ``full_groups`` keeps only groups of exactly
    ``group_size`` photos (a leftover single photo is not an n-photo query)."""
    start = time.perf_counter()
    labels = sorted({r.label for r in gallery} | {r.label for r in queries})
    label_id = {lab: i for i, lab in enumerate(labels)}
    gallery_labels = np.array([label_id[r.label] for r in gallery], dtype=np.int64)
    query_labels = np.array([label_id[r.label] for r in queries], dtype=np.int64)
    groups = group_queries(queries, group_size=group_size)
    if full_groups and group_size:
        groups = [g for g in groups if len(g) == group_size]
    config = RetrievalConfig(strategy=strategy, search_depth=search_depth)

    opts: dict[str, Any] = {
        "isolator": isolator, "detection_classes": detection_classes,
        "batch_size": batch_size, "progress": progress,
    }
    gallery_vectors = embed_records(embedder, gallery, **opts)
    query_vectors = embed_records(embedder, queries, **opts)
    outcomes = query_outcomes(
        gallery_vectors, gallery_labels, query_vectors, query_labels, groups, config=config
    )
    filtered = None
    extra: dict[str, Any] = {
        "n_gallery": len(gallery),
        "n_query_images": len(queries),
        "strategy": strategy,
        "search_depth": search_depth,
        "isolation": isolator.name if isolator is not None else "none",
        "group_size": group_size,
        "full_groups": full_groups,
    }
    if filter_column:
        allowed, n_unfiltered = allowed_per_group(gallery, queries, groups, filter_column)
        filtered = report_from(query_outcomes(
            gallery_vectors, gallery_labels, query_vectors, query_labels, groups,
            allowed=allowed, config=config,
        ))
        extra["n_queries_without_filter_value"] = n_unfiltered
    return EvalResult(
        model=getattr(embedder, "name", "unknown"),
        unfiltered=report_from(outcomes),
        filtered=filtered,
        filter_column=filter_column,
        seconds=time.perf_counter() - start,
        extra=extra,
        rankings=[[labels[s.sku_id] for s in o.ranking] for o in outcomes],
    )


def evaluate_csv(
    gallery_csv: str | Path,
    queries_csv: str | Path,
    *,
    model: str | None = None,
    filter_column: str | None = None,
    group_size: int | None = None,
    full_groups: bool = False,
    strategy: str = DEFAULT_STRATEGY,
    search_depth: int = DEFAULT_SEARCH_DEPTH,
    isolator: Isolator | None = None,
    detection_classes: Sequence[str] = (),
    device: str = "auto",
    batch_size: int = 32,
    progress: bool = False,
) -> EvalResult:
    """:func:`evaluate` on two image-list CSVs with a model name or checkpoint path."""
    from ml.embed import load_embedder

    gallery = read_image_csv(gallery_csv)
    queries = read_image_csv(queries_csv)
    embedder = load_embedder(model, device=device)
    result = evaluate(
        gallery,
        queries,
        embedder,
        filter_column=filter_column,
        group_size=group_size,
        full_groups=full_groups,
        strategy=strategy,
        search_depth=search_depth,
        isolator=isolator,
        detection_classes=detection_classes,
        batch_size=batch_size,
        progress=progress,
    )
    result.extra.update({"gallery": str(gallery_csv), "queries": str(queries_csv)})
    return result


def format_table(result: EvalResult) -> str:
    """Human-readable metrics table."""
    lines = [
        f"model: {result.model}   ({result.seconds:.1f} s)",
        f"{'':<24}{'R@1':>8}{'R@4':>8}{'R@10':>8}{'MAP@R':>8}{'queries':>9}",
    ]
    rows = [("unfiltered", result.unfiltered)]
    if result.filtered is not None:
        rows.append((f"filtered ({result.filter_column})", result.filtered))
    for name, rep in rows:
        lines.append(
            f"{name:<24}{rep.recall_at_1:>8.4f}{rep.recall_at_4:>8.4f}"
            f"{rep.recall_at_10:>8.4f}{rep.map_at_r:>8.4f}{rep.n_queries:>9d}"
        )
    return "\n".join(lines)


__all__ = ["EvalResult", "embed_records", "evaluate", "evaluate_csv", "format_table"]
