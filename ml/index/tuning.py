"""Tuning an IVF index: lists by size (:func:`choose_nlist`) and ``nprobe`` by measured recall.

``nprobe`` is tuned at build time on a sample of the data to reach :data:`TUNE_RECALL`
recall@10 against exact search.
"""

from __future__ import annotations

import faiss
import numpy as np

from ml.index.base import FaissIndexBase, _as_vectors

# build() tunes nprobe to reach this recall@10 on a sample of the stored vectors; the margin
# over the 0.98 target covers the sample's noise (512 queries: standard error ~0.002) and its
# optimism (stored vectors helped train the lists: at 1M, 0.985 there was 0.977 on new queries).
TUNE_RECALL = 0.99
TUNE_QUERIES = 512
NPROBE_LADDER = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# k-means wants roughly 39+ training points per centroid.
MIN_POINTS_PER_CENTROID = 39


def choose_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: ~2 sqrt(n), limited by the training set size.

    Measured at 1M x 256 (docs/benchmarks.md): 2 sqrt(n) lists reached recall@10 0.99 about
    25% faster than 4 sqrt(n) (half the centroids to score per query, for a few more vectors
    scanned), and train and add faster.
    """
    nlist = int(2 * np.sqrt(max(n, 1)))
    return max(1, min(nlist, n // MIN_POINTS_PER_CENTROID, 65_536))


class NprobeTuning(FaissIndexBase):
    """``nprobe`` chosen by recall against exact neighbours (IVF; a no-op on flat)."""

    def tune_nprobe(
        self,
        queries: np.ndarray,
        truth: np.ndarray,
        *,
        target_recall: float = TUNE_RECALL,
        exclude: np.ndarray | None = None,
    ) -> int:
        """Set :attr:`nprobe` to the smallest value of :data:`NPROBE_LADDER` reaching
        ``target_recall`` recall@k on ``queries`` against ``truth``.

        Args:
            queries: ``[q, dim]``.
            truth: ``[q, k]`` exact nearest ids.
            exclude: ``[q]`` an id to ignore per query (the query itself when it is stored).

        Returns:
            The chosen nprobe (``nlist`` when even that misses the target).
        """
        if self.kind != "ivf":
            return self.nprobe
        queries = _as_vectors(queries, self.dim)
        k = truth.shape[1]
        extra = 0 if exclude is None else 1
        chosen = self.nlist
        for nprobe in NPROBE_LADDER:
            if nprobe >= self.nlist:
                break
            self.nprobe = nprobe
            _, found = self._search_unfiltered(queries, k + extra)
            if exclude is not None:
                found = np.where(found == exclude[:, None], -1, found)
            hits = sum(
                len(np.intersect1d(f[f >= 0][:k], t)) for f, t in zip(found, truth, strict=True)
            )
            if hits / truth.size >= target_recall:
                chosen = nprobe
                break
        self.nprobe = chosen
        return chosen

    def tune_nprobe_on(
        self, vectors: np.ndarray, ids: np.ndarray, *, k: int = 10, seed: int = 0
    ) -> int:
        """:meth:`tune_nprobe` with :data:`TUNE_QUERIES` stored vectors as queries (their own
        id excluded) and exact float32 neighbours computed from ``vectors [n, dim]``."""
        rng = np.random.default_rng(seed + 1)
        rows = rng.choice(len(ids), min(TUNE_QUERIES, len(ids)), replace=False)
        queries = np.ascontiguousarray(vectors[rows])
        _, nn = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        truth = np.array(
            [[ids[j] for j in row if j != r][:k] for row, r in zip(nn, rows, strict=True)],
            dtype=np.int64,
        )
        return self.tune_nprobe(queries, truth, exclude=ids[rows])
