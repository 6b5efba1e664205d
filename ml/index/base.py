"""The wrapped Faiss index: ids, stored vectors and the raw (unfiltered) search calls.

:class:`FaissIndexBase` holds what every part of :class:`ml.index.VectorIndex` shares: the
Faiss index, the sorted id table (membership in O(log n)), reconstruction by id, and the Faiss
search primitives that survive ``faiss.contrib.torch_utils``'s monkeypatch.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from ml.index import gpu as gpu_search

_faiss: Any = faiss  # untyped access to SWIG names the stubs lack

# nprobe before tuning, and for saves whose meta lacks it; build() tunes it (2 to 16 measured
# with nlist ~ 2 sqrt(n)), and meta.json keeps the tuned value.
DEFAULT_NPROBE = 8


def _as_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
    return arr


def _as_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"expected vectors of shape [n, {dim}], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("vectors contain NaN or infinity")
    return arr


def _empty(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)


def _padded(dist: np.ndarray, found: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Faiss results ``[q, kk]`` (kk <= k) -> ``[q, k]`` with ``-inf`` / ``-1`` where missing."""
    scores, labels = _empty(len(found), k)
    found = found.astype(np.int64, copy=False)
    kk = found.shape[1]
    labels[:, :kk] = found
    scores[:, :kk] = np.where(found >= 0, dist, -np.inf)
    return scores, labels


class _IdTable:
    """Sorted stored ids and, for IVF, the inverted list of each: O(log n) membership tests
    (``np.isin`` against 1M ids costs ~100 ms a call), kept up to date by add/remove."""

    def __init__(self, ids: np.ndarray, lists: np.ndarray | None) -> None:
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.lists = lists[order] if lists is not None else None

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return gpu_search.is_member(ids, self.ids)

    def lists_of(self, present_ids: np.ndarray) -> np.ndarray:
        assert self.lists is not None
        found: np.ndarray = self.lists[np.searchsorted(self.ids, present_ids)]
        return found

    def insert(self, ids: np.ndarray, lists: np.ndarray | None) -> None:
        order = np.argsort(ids)
        ids = ids[order]
        pos = np.searchsorted(self.ids, ids)
        self.ids = np.insert(self.ids, pos, ids)
        if self.lists is not None and lists is not None:
            self.lists = np.insert(self.lists, pos, lists[order])

    def delete(self, present_ids: np.ndarray) -> None:
        pos = np.searchsorted(self.ids, present_ids)
        self.ids = np.delete(self.ids, pos)
        if self.lists is not None:
            self.lists = np.delete(self.lists, pos)


class FaissIndexBase:
    """Inner-product Faiss index with explicit int64 ids (the shared part of VectorIndex).

    Attributes:
        dim: vector size.
        kind: ``"flat"`` or ``"ivf"``.
        nprobe: inverted lists visited per IVF search (ignored by flat indexes).
    """

    def __init__(self, index: faiss.Index, *, nprobe: int = DEFAULT_NPROBE) -> None:
        # Any: faiss's SWIG classes are only partly typed.
        self._index: Any = index
        self._owned: list[Any] = []  # SWIG objects that must outlive self._index
        self.dim = int(index.d)
        self.kind = "ivf" if isinstance(index, faiss.IndexIVF) else "flat"
        self.nprobe = nprobe
        self._table: _IdTable | None = None
        # Flat indexes: (stored ids ascending, their rows in the vector buffer), for _gather.
        self._flat_rows: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def faiss_index(self) -> Any:
        """The wrapped Faiss index (for inspection and benchmarks)."""
        return self._index

    @property
    def codec(self) -> str:
        """How vectors are stored: ``"fp32"`` (flat, ``IndexIVFFlat``) or ``"fp16"``."""
        return "fp16" if isinstance(self._index, faiss.IndexIVFScalarQuantizer) else "fp32"

    @property
    def nlist(self) -> int:
        """Inverted lists (0 for a flat index)."""
        return int(self._index.nlist) if self.kind == "ivf" else 0

    def __len__(self) -> int:
        return self.ntotal

    def _ids_table(self) -> _IdTable:
        if self._table is None:
            if self.kind == "flat":
                ids = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
                self._table = _IdTable(ids, None)
            else:
                invlists = self._index.invlists
                parts, lists = [], []
                for i in range(invlists.nlist):
                    size = invlists.list_size(i)
                    if size:
                        parts.append(faiss.rev_swig_ptr(invlists.get_ids(i), size).copy())
                        lists.append(np.full(size, i, np.int64))
                ids = np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
                list_nos = np.concatenate(lists) if lists else np.empty(0, np.int64)
                self._table = _IdTable(ids, list_nos)
        return self._table

    def ids(self) -> np.ndarray:
        """All stored ids ``[ntotal]`` int64, ascending."""
        return self._ids_table().ids.copy()

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """``[n]`` bool: which of ``ids`` are stored."""
        return self._ids_table().contains(_as_ids(ids))

    def _gather(self, present_ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``present_ids [m]`` as ``[m, dim]`` float32."""
        flat = self._flat_buffer()
        if flat is not None:
            # A flat index's vectors are one buffer: indexing it is ~10x faster than Faiss's
            # reconstruct_batch through the id map (the gate gathers per query).
            if self._flat_rows is None:
                stored = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
                order = np.argsort(stored, kind="stable")
                self._flat_rows = (stored[order], order)
            ids, rows = self._flat_rows
            gathered: np.ndarray = flat[rows[np.searchsorted(ids, present_ids)]]
            return gathered
        # Both IndexIDMap2 and IVF with a direct map reconstruct by external id.
        out: np.ndarray = self._index.reconstruct_batch(np.ascontiguousarray(present_ids))
        return out.astype(np.float32, copy=False)

    def _flat_buffer(self) -> np.ndarray | None:
        """``[ntotal, dim]`` float32 view of a flat index's vectors (None for other kinds)."""
        if self.kind != "flat" or not hasattr(self._index, "id_map"):
            return None
        inner = faiss.downcast_index(self._index.index)
        if not isinstance(inner, faiss.IndexFlat) or self.ntotal == 0:
            return None
        buffer: np.ndarray = faiss.rev_swig_ptr(inner.get_xb(), self.ntotal * self.dim)
        return buffer.reshape(self.ntotal, self.dim)

    def _faiss_search(
        self, queries: np.ndarray, k: int, params: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, self.ntotal)
        # faiss.contrib.torch_utils (imported by pytorch-metric-learning) replaces search() with
        # a version without ``params``; the original numpy method survives as search_numpy.
        search = getattr(self._index, "search_numpy", self._index.search)
        dist, found = search(queries, kk, params=params)
        return _padded(dist, found, k)

    def _search_unfiltered(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = _faiss.SearchParametersIVF(nprobe=self.nprobe) if self.kind == "ivf" else None
        return self._faiss_search(queries, k, params)

    def _coarse(self, queries: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest lists: ``(scores [q, nprobe] float32, lists [q, nprobe] int64)``."""
        quantizer = self._index.quantizer
        search = getattr(quantizer, "search_numpy", quantizer.search)
        d, lists = search(queries, nprobe)
        return np.ascontiguousarray(d), np.ascontiguousarray(lists.astype(np.int64, copy=False))

    def _search_preassigned(
        self, queries: np.ndarray, k: int, lists: np.ndarray, coarse: np.ndarray, sel: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        nq, nprobe = lists.shape
        dist = np.empty((nq, k), np.float32)
        found = np.empty((nq, k), np.int64)
        params = _faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        # The raw SWIG method: the numpy wrapper rejects params (faiss 1.15).
        self._index.search_preassigned_c(
            nq,
            faiss.swig_ptr(queries),
            k,
            faiss.swig_ptr(lists),
            faiss.swig_ptr(coarse),
            faiss.swig_ptr(dist),
            faiss.swig_ptr(found),
            False,
            params,
        )
        return _padded(dist, found, k)
