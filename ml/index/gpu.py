"""Filtered search for indexes that ignore Faiss's ``IDSelector`` (Faiss GPU), and its devices.

Faiss GPU indexes (Flat and IVF) accept ``SearchParameters.sel`` and silently ignore it (faiss
issues #3114 and #3924), so a filter passed that way would leak disallowed ids. The strategy here
never hands a selector to the device: a :class:`SearchDevice` only answers *unfiltered* k-NN
(``search``) and exact k-NN over vectors it is given (``knn``), and the filter is applied on our
side by two methods:

* **subset** (selective filters): gather the allowed vectors and score them all,
  ``[q, dim] @ [dim, m]`` on the device, in chunks. Exact by construction.
* **over-fetch** (broad filters): ask the device for the unfiltered top-k' with
  ``k' = oversample * k * ntotal / m`` and keep the allowed ids, in order. When the device's
  search is exact (flat), a row that keeps at least ``k`` ids holds the exact filtered top-k:
  an allowed vector scoring above the k-th kept one also scores above the k'-th unfiltered one,
  so it would have been in the list. On IVF it is exactly what the selector would have returned
  from the same probed lists. Rows that keep fewer than ``k`` are widened (``k' * 4``) up to the
  device's largest ``k``, then answered by the subset method, so a query gets ``k`` results
  whenever ``k`` allowed vectors exist.

Every result is either an allowed id that survived the membership test or the score of an
allowed vector, so the filter is honoured in 100% of results whatever the device does; the tests
check that against numpy on CPU with :class:`SelectorBlindCpuDevice`, which runs this same code
with the CPU index standing in for the GPU one. GPU timings are not measured (no GPU here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import faiss
import numpy as np

_faiss: Any = faiss

# Largest k that Faiss GPU's k-selection supports (GPU_MAX_SELECTION_K since faiss 1.7.3).
GPU_MAX_K = 2048
# Filters allowing at most this many vectors go straight to the exact subset method.
SUBSET_MAX = 20_000
# Over-fetch factor on top of k * ntotal / m (the expected need of a filter unrelated to
# the query); a filter matching the query's neighbourhood needs far less.
OVERSAMPLE = 2.0
WIDEN = 4
# Subset method: vectors scored per device call, bounding temporary memory to chunk * dim * 4.
SUBSET_CHUNK = 65_536
# numpy_knn: query batches up to this size skip BLAS.
SMALL_BATCH = 4

Gather = Callable[[np.ndarray], np.ndarray]


def gpu_count() -> int:
    """GPUs visible to Faiss; 0 with ``faiss-cpu`` (which has no ``get_num_gpus`` on old builds)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


class SearchDevice(Protocol):
    """Where k-NN runs. It is never given a filter."""

    name: str
    max_k: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered top-k of ``queries [q, dim]`` over the whole index.

        Returns:
            ``(scores [q, k] float32, ids [q, k] int64)``, best first; id ``-1`` where missing.
        """
        ...

    def knn(
        self, queries: np.ndarray, vectors: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k rows of ``vectors [m, dim]`` by inner product.

        Returns:
            ``(scores [q, min(k, m)] float32, rows [q, min(k, m)] int64)``, best first.
        """
        ...

    def invalidate(self) -> None:
        """The CPU index changed: drop any replica."""
        ...


def numpy_knn(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product on CPU: ``(scores [q, k] float32, rows [q, k] int64)``."""
    if len(queries) <= SMALL_BATCH:
        # A threaded BLAS call for one query stalls 20-40 ms waking its threads on a busy
        # machine (measured: 1 x 10k: 41 ms vs 0.5 ms here); einsum stays on this thread.
        sims = np.einsum("qd,md->qm", queries, vectors)
    else:
        sims = queries @ vectors.T  # [q, m]
    k = min(k, vectors.shape[0])
    if k == 0:
        return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1, kind="stable")
    rows = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(sims, rows, axis=1).astype(np.float32), rows.astype(np.int64)


def is_member(ids: np.ndarray, allowed_sorted: np.ndarray) -> np.ndarray:
    """``ids [...]`` in the sorted unique ``allowed_sorted [m]``, elementwise (``-1`` never is)."""
    if len(allowed_sorted) == 0:
        return np.zeros(ids.shape, bool)
    pos = np.minimum(np.searchsorted(allowed_sorted, ids), len(allowed_sorted) - 1)
    found: np.ndarray = allowed_sorted[pos] == ids
    return found


def subset_search(
    knn: Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray,
    gather: Gather,
    *,
    chunk: int = SUBSET_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact filtered top-k: score every allowed vector, ``chunk`` at a time.

    Args:
        knn: exact k-NN over given vectors (:func:`numpy_knn` or a device's ``knn``).
        queries: ``[q, dim]``.
        allowed: ``[m]`` ids, all stored.
        gather: ids ``[n]`` -> their stored vectors ``[n, dim]``.

    Returns:
        ``(scores [q, k], ids [q, k])``, padded with ``-inf`` / ``-1``.
    """
    nq = len(queries)
    scores = np.full((nq, k), -np.inf, np.float32)
    labels = np.full((nq, k), -1, np.int64)
    for start in range(0, len(allowed), chunk):
        block = allowed[start : start + chunk]
        s, rows = knn(queries, np.ascontiguousarray(gather(block), dtype=np.float32), k)
        if start == 0 and len(allowed) <= chunk:  # one block: already sorted, nothing to merge
            scores[:, : s.shape[1]], labels[:, : s.shape[1]] = s, block[rows]
            break
        all_s = np.concatenate([scores, s], axis=1)
        all_i = np.concatenate([labels, block[rows]], axis=1)
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(all_s, order, axis=1)
        labels = np.take_along_axis(all_i, order, axis=1)
    return scores, labels


@dataclass
class FilterStats:
    """How :func:`filtered_search` answered (for tests and benchmarks)."""

    subset_rows: int = 0  # rows answered by scoring the allowed vectors
    overfetch_rows: int = 0  # rows answered from the unfiltered results
    device_searches: int = 0  # unfiltered device searches made (one per widening round)
    max_k_used: int = 0


def filtered_search(
    device: SearchDevice,
    queries: np.ndarray,
    k: int,
    allowed: np.ndarray,
    *,
    ntotal: int,
    gather: Gather,
    subset_max: int | None = None,
    oversample: float | None = None,
) -> tuple[np.ndarray, np.ndarray, FilterStats]:
    """Filtered top-k on a device that cannot honour a selector (see the module docstring).

    Args:
        device: answers unfiltered k-NN.
        queries: ``[q, dim]`` float32, L2-normalised.
        k: results per query.
        allowed: ``[m]`` sorted unique ids, all of them stored in the index.
        ntotal: vectors in the index.
        gather: ids ``[n]`` -> stored vectors ``[n, dim]`` (the CPU index's ``reconstruct``).
        subset_max: filters up to this size use the exact subset method only
            (default :data:`SUBSET_MAX`).
        oversample: over-fetch factor (default :data:`OVERSAMPLE`).

    Returns:
        ``(scores [q, k] float32, ids [q, k] int64, stats)``; ``-inf`` / ``-1`` where fewer
        than ``k`` allowed vectors exist.
    """
    subset_max = SUBSET_MAX if subset_max is None else subset_max
    oversample = OVERSAMPLE if oversample is None else oversample
    nq, m = len(queries), len(allowed)
    scores = np.full((nq, k), -np.inf, np.float32)
    labels = np.full((nq, k), -1, np.int64)
    stats = FilterStats()
    if nq == 0 or k == 0 or m == 0:
        return scores, labels, stats
    limit = min(device.max_k, ntotal)
    k_fetch = max(k, math.ceil(oversample * k * ntotal / m))
    pending = np.arange(nq)
    if m > subset_max and k_fetch <= limit:
        to_subset: list[np.ndarray] = []
        while pending.size:
            d, found = device.search(queries[pending], k_fetch)
            stats.device_searches += 1
            stats.max_k_used = max(stats.max_k_used, k_fetch)
            keep = is_member(found, allowed) & (found >= 0)
            enough = keep.sum(axis=1) >= k
            if enough.any():
                rows = pending[enough]
                # A stable sort on "not kept" brings the kept hits to the front, in score order.
                first = np.argsort(~keep[enough], axis=1, kind="stable")[:, :k]
                scores[rows] = np.take_along_axis(d[enough], first, axis=1)
                labels[rows] = np.take_along_axis(found[enough], first, axis=1)
                stats.overfetch_rows += len(rows)
            short = pending[~enough]
            if k_fetch >= limit:
                to_subset.append(short)
                break
            # A row with a -1 saw all the index can reach (IVF: its probed lists), so a larger
            # k' cannot help it; the subset method can.
            exhausted = (found[~enough] < 0).any(axis=1)
            to_subset.append(short[exhausted])
            pending = short[~exhausted]
            k_fetch = min(limit, k_fetch * WIDEN)
        pending = np.concatenate(to_subset)
    if pending.size:
        s, i = subset_search(device.knn, queries[pending], k, allowed, gather)
        scores[pending], labels[pending] = s, i
        stats.subset_rows += len(pending)
    return scores, labels, stats


class SelectorBlindCpuDevice:
    """The CPU index behaving like a GPU one: searched without any selector.

    It runs :func:`filtered_search` (the GPU code path) on machines without a GPU, so that
    tests and benchmarks prove the strategy; ``max_k`` is the GPU's.
    """

    name = "cpu-no-selector"

    def __init__(self, search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]) -> None:
        self._search = search
        self.max_k = GPU_MAX_K

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search(queries, k)

    def knn(
        self, queries: np.ndarray, vectors: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return numpy_knn(queries, vectors, k)

    def invalidate(self) -> None:
        pass


class IndexSource(Protocol):
    """What :class:`GpuDevice` needs from the CPU index (``ml.index.VectorIndex``)."""

    kind: str
    dim: int
    nprobe: int

    @property
    def faiss_index(self) -> Any: ...

    def ids(self) -> np.ndarray: ...

    def reconstruct(self, ids: np.ndarray) -> np.ndarray: ...


class GpuDevice:  # pragma: no cover - needs faiss-gpu and CUDA; not available on this machine
    """A read-only replica of the CPU index on one GPU, rebuilt lazily after any change.

    IVF is cloned with ``index_cpu_to_gpu`` (it keeps its ids); a flat index becomes a
    ``GpuIndexFlatIP`` over the stored vectors plus a row -> id array, which avoids relying on
    the cloner for ``IndexIDMap2``. The CPU index stays the source of truth (adds, removals,
    the hashtable direct map, saves).
    """

    name = "gpu"

    def __init__(self, source: IndexSource, *, gpu: int = 0) -> None:
        if gpu_count() == 0:
            raise RuntimeError("Faiss sees no GPU (faiss-cpu, or no CUDA device)")
        self._source = source
        self._gpu = gpu
        self._resources = _faiss.StandardGpuResources()
        self._replica: Any = None
        self._row_ids: np.ndarray | None = None
        self.max_k = GPU_MAX_K

    def invalidate(self) -> None:
        self._replica, self._row_ids = None, None

    def _ensure(self) -> Any:
        if self._replica is None:
            src = self._source
            if src.kind == "ivf":
                self._replica = _faiss.index_cpu_to_gpu(self._resources, self._gpu, src.faiss_index)
                self._row_ids = None
            else:
                ids = src.ids()
                flat = _faiss.GpuIndexFlatIP(self._resources, src.dim)
                if len(ids):
                    flat.add(np.ascontiguousarray(src.reconstruct(ids), dtype=np.float32))
                self._replica, self._row_ids = flat, ids
        return self._replica

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        replica = self._ensure()
        if self._row_ids is None:
            _faiss.GpuParameterSpace().set_index_parameter(replica, "nprobe", self._source.nprobe)
        d, found = replica.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        found = found.astype(np.int64, copy=False)
        if self._row_ids is not None:
            found = np.where(found >= 0, self._row_ids[np.maximum(found, 0)], -1)
        return np.where(found >= 0, d, -np.inf).astype(np.float32), found

    def knn(
        self, queries: np.ndarray, vectors: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        d, rows = _faiss.knn_gpu(
            self._resources,
            np.ascontiguousarray(queries, dtype=np.float32),
            np.ascontiguousarray(vectors, dtype=np.float32),
            min(k, len(vectors)),
            metric=faiss.METRIC_INNER_PRODUCT,
            device=self._gpu,
        )
        return d.astype(np.float32), rows.astype(np.int64)


__all__ = [
    "GPU_MAX_K",
    "FilterStats",
    "GpuDevice",
    "SearchDevice",
    "SelectorBlindCpuDevice",
    "filtered_search",
    "gpu_count",
    "is_member",
    "numpy_knn",
    "subset_search",
]
