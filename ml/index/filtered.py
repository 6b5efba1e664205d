"""Exact filtered search on CPU (``allowed_ids``), honoured in 100% of results.

* flat index, or at most :data:`EXACT_FILTER_MAX` allowed vectors: brute force over the
  allowed vectors (exact; one sgemm, cheaper than a selector scan or probing);
* more, on IVF: ``IDSelector`` over the probed lists. A query needs ``want =
  max(MIN_FILTER_CANDIDATES, 10 k)`` allowed vectors in its probed lists; when a filter is too
  sparse to promise that (``nprobe * m / nlist < want``), the lists are checked per query, and a
  query short of candidates is answered by brute force over the allowed vectors (up to
  :data:`THIN_SUBSET_MAX` of them) or probes further lists, nearest first, until it has them.
  So a filter unrelated to the query's neighbourhood (a different category) does not starve it.

A filter's preparation (sorting, membership, per-list counts, selector, and for brute force the
gathered vectors; ~25 ms for 100k ids at 1M) is cached for the last :data:`FILTER_CACHE_SIZE`
distinct filters, as the same category / brand / series filters come back request after
request; any add or remove clears the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from ml.index.base import FaissIndexBase, _empty, _padded
from ml.index.gpu import numpy_knn, subset_search

_faiss: Any = faiss  # untyped access to SWIG names the stubs lack

# Filters allowing up to this many vectors are scored exactly by brute force. Measured at 1M
# (batches of 1000): faster than the IVF path below ~2,000, and at 5,000 still above the
# 5,000 queries/s target with recall 1.0.
EXACT_FILTER_MAX = 5_000
# IVF + filter: a query needs this many allowed vectors in its probed lists (and 10 per result).
MIN_FILTER_CANDIDATES = 100
FILTER_CANDIDATES_PER_K = 10
# A query short of them is scored exactly over the allowed vectors when there are at most this
# many, otherwise it probes up to WIDE_PROBE_MAX lists.
THIN_SUBSET_MAX = 50_000
WIDE_PROBE_MAX = 256
FILTER_CACHE_SIZE = 16
# Prepared filters also keep their gathered vectors (for brute force) up to this many bytes in
# all: a repeated selective filter then costs one sgemm, not a gather (~2 us a vector).
FILTER_VECTOR_CACHE_BYTES = 128 * 2**20
# IDSelectorBitmap (a bit test per scanned id, ~2x faster than IDSelectorBatch's hash set at 1M)
# when the largest allowed id fits a bitmap of this many bytes.
BITMAP_MAX_BYTES = 16 * 2**20


def _selector(allowed_sorted: np.ndarray) -> tuple[Any, np.ndarray]:
    """A Faiss selector for the sorted unique ``allowed_sorted [m]`` (m >= 1), and the array
    it points into, which must outlive the search."""
    top = int(allowed_sorted[-1])
    if allowed_sorted[0] >= 0 and (top >> 3) < BITMAP_MAX_BYTES:
        bits = np.zeros((top >> 3) + 1, np.uint8)
        # Ids are sorted and unique, so each byte's bits can be summed instead of OR-ed.
        np.add.at(bits, allowed_sorted >> 3, (1 << (allowed_sorted & 7)).astype(np.uint8))
        return _faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits
    return faiss.IDSelectorBatch(allowed_sorted), allowed_sorted


@dataclass
class _Filter:
    """A prepared filter: ``allowed [m]`` sorted present ids, and for IVF the allowed count of
    each list and the selector (built on first use)."""

    allowed: np.ndarray
    per_list: np.ndarray | None
    selector: Any = None
    keepalive: np.ndarray | None = None
    vectors: np.ndarray | None = None  # [m, dim], the stored vectors of `allowed`


class FilteredSearch(FaissIndexBase):
    """The exact filtered-search paths of :class:`ml.index.VectorIndex` and their cache."""

    def __init__(self, index: faiss.Index, **kwargs: Any) -> None:
        super().__init__(index, **kwargs)
        self._filters: OrderedDict[tuple[int, int], tuple[np.ndarray, _Filter]] = OrderedDict()

    def _search_filtered(
        self, queries: np.ndarray, k: int, filt: _Filter
    ) -> tuple[np.ndarray, np.ndarray]:
        """``filt`` (non-empty) on Faiss CPU: brute force or IVF with a selector."""
        if self.kind == "flat" or len(filt.allowed) <= EXACT_FILTER_MAX:
            # Flat: scoring the gathered allowed vectors with one sgemm beats a selector scan
            # of all n (which also loses BLAS) at any filter size.
            return self._search_subset(queries, k, filt)
        return self._search_ivf_filtered(queries, k, filt)

    def _search_subset(
        self, queries: np.ndarray, k: int, filt: _Filter
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact: every allowed vector scored, from the filter's kept copy when it fits."""
        vectors = self._filter_vectors(filt)
        if vectors is None:
            return subset_search(numpy_knn, queries, k, filt.allowed, self._gather)
        top, rows = numpy_knn(queries, vectors, k)
        scores, labels = _empty(len(queries), k)
        scores[:, : top.shape[1]], labels[:, : top.shape[1]] = top, filt.allowed[rows]
        return scores, labels

    def _filter_vectors(self, filt: _Filter) -> np.ndarray | None:
        """The stored vectors of ``filt.allowed`` ``[m, dim]``, gathered once and kept within
        :data:`FILTER_VECTOR_CACHE_BYTES` (oldest filters give theirs up); None if too big."""
        if filt.vectors is None:
            size = len(filt.allowed) * self.dim * 4
            if size > FILTER_VECTOR_CACHE_BYTES // 4:
                return None
            held = sum(f.vectors.nbytes for _, f in self._filters.values() if f.vectors is not None)
            for _, old in self._filters.values():  # oldest first
                if held + size <= FILTER_VECTOR_CACHE_BYTES:
                    break
                if old.vectors is not None:
                    held -= old.vectors.nbytes
                    old.vectors = None
            filt.vectors = self._gather(filt.allowed)
        return filt.vectors

    def _filter_gather(self, filt: _Filter) -> Callable[[np.ndarray], np.ndarray]:
        """``gather`` for :func:`ml.index.gpu.filtered_search`: blocks of ``filt.allowed``,
        served from the filter's kept copy (made on first use) when it fits."""

        def gather(block: np.ndarray) -> np.ndarray:
            vectors = self._filter_vectors(filt)
            if vectors is None:
                return self._gather(block)
            out: np.ndarray = vectors[np.searchsorted(filt.allowed, block)]
            return out

        return gather

    def _prepare_filter(self, allowed_ids: np.ndarray) -> _Filter:
        key = (len(allowed_ids), hash(allowed_ids.tobytes()))
        hit = self._filters.get(key)
        if hit is not None and np.array_equal(hit[0], allowed_ids):
            self._filters.move_to_end(key)
            return hit[1]
        table = self._ids_table()
        allowed = np.unique(allowed_ids)
        pos = np.minimum(np.searchsorted(table.ids, allowed), max(len(table.ids) - 1, 0))
        present = table.ids[pos] == allowed if len(table.ids) else np.zeros(len(allowed), bool)
        allowed, pos = allowed[present], pos[present]
        per_list = None
        if self.kind == "ivf" and table.lists is not None:
            per_list = np.bincount(table.lists[pos], minlength=self.nlist)
        filt = _Filter(allowed, per_list)
        self._filters[key] = (allowed_ids.copy(), filt)
        if len(self._filters) > FILTER_CACHE_SIZE:
            self._filters.popitem(last=False)
        return filt

    def _search_ivf_filtered(
        self, queries: np.ndarray, k: int, filt: _Filter
    ) -> tuple[np.ndarray, np.ndarray]:
        allowed, per_list = filt.allowed, filt.per_list
        assert per_list is not None
        if filt.selector is None:
            filt.selector, filt.keepalive = _selector(allowed)
        sel, nlist, m = filt.selector, self.nlist, len(allowed)
        nprobe = min(self.nprobe, nlist)
        kk = min(k, self.ntotal)
        want = min(max(MIN_FILTER_CANDIDATES, FILTER_CANDIDATES_PER_K * k), m)
        params = _faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        scores, labels = self._faiss_search(queries, kk, params)
        if nprobe * m / nlist >= want or nprobe >= nlist:
            # Even spread at random, the filter leaves `want` candidates in any nprobe lists.
            return _padded(scores, labels, k)
        # The lists the results came from were probed: if they alone hold `want` allowed
        # vectors the query had enough. Only the others need their probed lists (a second
        # coarse quantization, which costs ~40% of a search when done for every query).
        unsure = np.flatnonzero(self._result_lists_reach(labels, per_list) < want)
        if unsure.size == 0:
            return _padded(scores, labels, k)
        _, lists = self._coarse(np.ascontiguousarray(queries[unsure]), nprobe)
        thin = unsure[per_list[np.maximum(lists, 0)].sum(axis=1) < want]
        if thin.size == 0:
            return _padded(scores, labels, k)
        thin_queries = np.ascontiguousarray(queries[thin])
        if m <= THIN_SUBSET_MAX:
            # The filter is sparse around these queries: score its vectors exactly.
            s, i = self._search_subset(thin_queries, kk, filt)
        else:
            # Probe further lists, nearest first, until they hold `want` allowed vectors
            # (the rest of each row is -1: skipped).
            width = min(nlist, max(WIDE_PROBE_MAX, nprobe))
            wide_coarse, wide = self._coarse(thin_queries, width)
            reach = np.cumsum(per_list[np.maximum(wide, 0)], axis=1)
            needed = np.maximum(nprobe, (reach < want).sum(axis=1) + 1)
            width = int(min(width, needed.max()))
            wide = np.where(np.arange(width) < needed[:, None], wide[:, :width], -1)
            s, i = self._search_preassigned(
                thin_queries,
                kk,
                np.ascontiguousarray(wide),
                np.ascontiguousarray(wide_coarse[:, :width]),
                sel,
            )
        scores[thin], labels[thin] = s, i
        return _padded(scores, labels, k)

    def _result_lists_reach(self, labels: np.ndarray, per_list: np.ndarray) -> np.ndarray:
        """``[q]``: allowed vectors held by the distinct lists that ``labels [q, k]`` came from."""
        valid = labels >= 0
        lists = np.full(labels.shape, -1, np.int64)
        lists[valid] = self._ids_table().lists_of(labels[valid])
        lists.sort(axis=1)
        first = np.ones(lists.shape, bool)
        first[:, 1:] = lists[:, 1:] != lists[:, :-1]
        reach: np.ndarray = np.where(first & (lists >= 0), per_list[np.maximum(lists, 0)], 0).sum(1)
        return reach
