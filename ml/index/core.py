"""Faiss vector index with explicit int64 ids, exact filters and atomic versioned saves.

Vectors are L2-normalised embeddings, so inner product = cosine similarity.

Index type by size (:meth:`VectorIndex.build`; numbers in docs/benchmarks.md, "Index at 1M
vectors"):

* below :data:`IVF_THRESHOLD` vectors: ``IndexIDMap2(IndexFlatIP)``, exact;
* from :data:`IVF_THRESHOLD` up: IVF (inner product, ``nlist ~ 2 sqrt(n)``) with vectors stored
  as float16 (``IndexIVFScalarQuantizer(QT_fp16)``: same recall as float32 on our benchmark,
  ~1.35x the speed, half the memory) and a hashtable direct map so that arbitrary ids can be
  removed and reconstructed (HNSW could not remove). ``nprobe`` is tuned at build time on a
  sample of the data to reach :data:`TUNE_RECALL` recall@10 against exact search.

Filtered search (``allowed_ids``) honours the filter exactly, in 100% of results:

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

Faiss GPU ignores selectors, so on a GPU device filtered search goes through
:mod:`ml.index.gpu` instead (over-fetch + membership test, or brute force over the subset);
``use_device("cpu-no-selector")`` runs that same code on CPU for tests and benchmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ml.index import gpu as gpu_search
from ml.index.gpu import SearchDevice, filtered_search, numpy_knn, subset_search

_faiss: Any = faiss  # untyped access to SWIG names the stubs lack

# Flat (exact) below, IVF from here up: measured (bench/index_scale.py, docs/benchmarks.md)
# as the size where exact search drops below the 5,000 queries/s target (batches of 1000,
# 2 shared cores) while tuned IVF stays far above it. Tuned IVF was faster at every size
# measured (from 1,000 vectors), so the pure speed crossover would make every index IVF.
IVF_THRESHOLD = 10_000
# nprobe before tuning, and for saves whose meta lacks it; build() tunes it (2 to 16 measured
# with nlist ~ 2 sqrt(n)), and meta.json keeps the tuned value.
DEFAULT_NPROBE = 8
# build() tunes nprobe to reach this recall@10 on a sample of the stored vectors; the margin
# over the 0.98 target covers the sample's noise (512 queries: standard error ~0.002) and its
# optimism (stored vectors helped train the lists: at 1M, 0.985 there was 0.977 on new queries).
TUNE_RECALL = 0.99
TUNE_QUERIES = 512
NPROBE_LADDER = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
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
# k-means wants roughly 39+ training points per centroid.
MIN_POINTS_PER_CENTROID = 39
CODECS = ("fp16", "fp32")
DEVICES = ("cpu", "gpu", "cpu-no-selector", "auto")

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
CURRENT_FILE = "CURRENT"
FORMAT = 1


class IndexCorruptError(ValueError):
    """A saved index is missing files or does not match its metadata."""


def configure_threads(n: int | None = None) -> None:
    """Faiss uses OpenMP; undo ``OMP_NUM_THREADS=1`` left behind by other libraries."""
    faiss.omp_set_num_threads(n or os.cpu_count() or 1)


def choose_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: ~2 sqrt(n), limited by the training set size.

    Measured at 1M x 256 (docs/benchmarks.md): 2 sqrt(n) lists reached recall@10 0.99 about
    25% faster than 4 sqrt(n) (half the centroids to score per query, for a few more vectors
    scanned), and train and add faster.
    """
    nlist = int(2 * np.sqrt(max(n, 1)))
    return max(1, min(nlist, n // MIN_POINTS_PER_CENTROID, 65_536))


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


@dataclass
class _Filter:
    """A prepared filter: ``allowed [m]`` sorted present ids, and for IVF the allowed count of
    each list and the selector (built on first use)."""

    allowed: np.ndarray
    per_list: np.ndarray | None
    selector: Any = None
    keepalive: np.ndarray | None = None
    vectors: np.ndarray | None = None  # [m, dim], the stored vectors of `allowed`


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


class VectorIndex:
    """Inner-product index over L2-normalised vectors with explicit int64 ids.

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
        self._device: SearchDevice | None = None  # None: Faiss CPU with selectors
        self._filters: OrderedDict[tuple[int, int], tuple[np.ndarray, _Filter]] = OrderedDict()
        self.last_filter_stats: gpu_search.FilterStats | None = None

    # ----- construction -------------------------------------------------------------------

    @classmethod
    def create(cls, dim: int, *, expected_size: int = 0) -> VectorIndex:
        """An empty flat index. An IVF index needs training data, so for a catalogue expected
        to reach :data:`IVF_THRESHOLD` use :meth:`build` (e.g. from the database); until the
        next rebuild an index created here stays exact, whatever ``expected_size`` says."""
        del expected_size  # accepted for the contract; an empty IVF could not be trained
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        kind: str = "auto",
        nlist: int | None = None,
        codec: str = "fp16",
        nprobe: int | None = None,
        seed: int = 0,
    ) -> VectorIndex:
        """Build from scratch (a full rebuild), choosing the index type by size.

        Args:
            ids: ``[n]`` int64, unique.
            vectors: ``[n, dim]`` float32, L2-normalised.
            kind: ``"auto"`` (flat below :data:`IVF_THRESHOLD` vectors, IVF from there),
                ``"flat"`` or ``"ivf"``.
            nlist: IVF lists; default :func:`choose_nlist`.
            codec: IVF vector storage, ``"fp16"`` (default) or ``"fp32"`` (``IndexIVFFlat``).
            nprobe: IVF lists probed per query; default: tuned on ``vectors`` to reach
                :data:`TUNE_RECALL` recall@10 (see :meth:`tune_nprobe`).
            seed: for the k-means training sample and the tuning sample.
        """
        ids = _as_ids(ids)
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if vectors.ndim != 2:
            raise ValueError(f"expected vectors [n, dim], got shape {vectors.shape}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        dim = vectors.shape[1]
        if kind == "auto":
            kind = "ivf" if len(ids) >= IVF_THRESHOLD else "flat"
        if kind == "flat":
            index = cls.create(dim)
            index.add(ids, vectors)
            return index
        if kind != "ivf":
            raise ValueError(f"kind must be auto, flat or ivf, got {kind!r}")
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")
        vectors = _as_vectors(vectors, dim)
        nlist = nlist or choose_nlist(len(ids))
        if len(ids) < nlist:
            raise ValueError(f"IVF with {nlist} lists needs at least {nlist} training vectors")
        quantizer = faiss.IndexFlatIP(dim)
        if codec == "fp16":
            ivf: Any = faiss.IndexIVFScalarQuantizer(
                quantizer, dim, nlist, _faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
            )
        else:
            ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = seed
        rng = np.random.default_rng(seed)
        # k-means wants 39+ points per centroid; more only slows training down.
        n_train = min(len(ids), nlist * 40)
        sample = (
            vectors
            if n_train == len(ids)
            else vectors[np.sort(rng.choice(len(ids), n_train, replace=False))]
        )
        ivf.train(sample)
        # Hashtable direct map: remove()/reconstruct() with arbitrary (non-sequential) ids.
        ivf.set_direct_map_type(_faiss.DirectMap.Hashtable)
        index = cls(ivf, nprobe=nprobe or DEFAULT_NPROBE)
        index._owned.append(quantizer)
        index.add(ids, vectors)
        if nprobe is None:
            index.tune_nprobe_on(vectors, ids, seed=seed)
        return index

    # ----- basic properties ---------------------------------------------------------------

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

    @property
    def device(self) -> str:
        """Where searches run: ``"cpu"``, ``"gpu"`` or ``"cpu-no-selector"``."""
        return self._device.name if self._device is not None else "cpu"

    @property
    def needs_rebuild(self) -> bool:
        """True when :meth:`build` would now choose another structure: a flat index grown to
        :data:`IVF_THRESHOLD`, an IVF index shrunk below half of it, or IVF lists trained for
        a size more than 4x away from the current one (``nlist`` off by 2x)."""
        n = self.ntotal
        if self.kind == "flat":
            return n >= IVF_THRESHOLD
        return n < IVF_THRESHOLD // 2 or not 0.5 <= self.nlist / choose_nlist(n) <= 2

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

    # ----- devices -----------------------------------------------------------------------

    def use_device(self, device: str = "cpu", *, gpu: int = 0) -> None:
        """Choose where searches run.

        * ``"cpu"``: Faiss CPU, filters through ``IDSelector`` (the default);
        * ``"gpu"``: a replica on GPU ``gpu`` (faiss-gpu), filters through
          :func:`ml.index.gpu.filtered_search` because GPU indexes ignore selectors;
        * ``"cpu-no-selector"``: that GPU code path with the CPU index standing in for the GPU
          one (tests, benchmarks);
        * ``"auto"``: ``"gpu"`` when Faiss sees one, else ``"cpu"``.
        """
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if device == "auto":
            device = "gpu" if gpu_search.gpu_count() > 0 else "cpu"
        if device == "cpu":
            self._device = None
        elif device == "gpu":
            self._device = gpu_search.GpuDevice(self, gpu=gpu)
        else:
            self._device = gpu_search.SelectorBlindCpuDevice(self._search_unfiltered)

    # ----- mutation ----------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors [n, dim]`` under ``ids [n]``; raises ``ValueError`` on duplicate ids
        (use :meth:`upsert` to replace)."""
        ids = _as_ids(ids)
        vectors = _as_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids in one add() call")
        table = self._ids_table()
        dup = table.contains(ids)
        if dup.any():
            raise ValueError(f"ids already in the index: {ids[dup][:5].tolist()} (use upsert)")
        if self.kind == "ivf":
            # Assign once here so that the id table learns each vector's list.
            _, assign = self._coarse(vectors, 1)
            lists = np.ascontiguousarray(assign[:, 0])
            self._index.add_core(
                len(ids), faiss.swig_ptr(vectors), faiss.swig_ptr(ids), faiss.swig_ptr(lists)
            )
            table.insert(ids, lists)
        else:
            self._index.add_with_ids(vectors, ids)
            table.insert(ids, None)
        self._changed()

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids [n]`` (missing ones are ignored); returns how many were removed."""
        ids = _as_ids(ids)
        if len(ids) == 0 or self.ntotal == 0:
            return 0
        table = self._ids_table()
        present = np.ascontiguousarray(np.unique(ids[table.contains(ids)]))
        if len(present) == 0:
            return 0
        # The hashtable direct map only accepts IDSelectorArray, of ids actually present.
        sel: Any = (
            faiss.IDSelectorArray(len(present), faiss.swig_ptr(present))
            if self.kind == "ivf"
            else faiss.IDSelectorBatch(present)
        )
        removed = int(self._index.remove_ids(sel))
        table.delete(present)
        self._changed()
        return removed

    def _changed(self) -> None:
        self._filters.clear()
        if self._device is not None:
            self._device.invalidate()

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of existing ids and add new ones."""
        self.remove(ids)
        self.add(ids, vectors)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids [n]`` -> ``[n, dim]`` (fp16 codec: rounded to float16);
        ``KeyError`` for an unknown id."""
        ids = _as_ids(ids)
        if len(ids) == 0:
            return np.empty((0, self.dim), np.float32)
        missing = ids[~self.contains(ids)]
        if len(missing):
            raise KeyError(f"ids not in the index: {missing[:5].tolist()}")
        return self._gather(ids)

    def _gather(self, present_ids: np.ndarray) -> np.ndarray:
        # Both IndexIDMap2 and IVF with a direct map reconstruct by external id.
        out: np.ndarray = self._index.reconstruct_batch(np.ascontiguousarray(present_ids))
        return out.astype(np.float32, copy=False)

    # ----- search ------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """k nearest stored vectors by inner product.

        Args:
            queries: ``[q, dim]`` float32, L2-normalised.
            k: results per query.
            allowed_ids: if given, only these ids may be returned (exactly honoured; unknown
                ids are ignored). A batch shares one filter.

        Returns:
            ``(cosine [q, k] float32, ids [q, k] int64)``, best first; where fewer than ``k``
            results exist the id is ``-1`` and the cosine ``-inf``.
        """
        queries = _as_vectors(np.atleast_2d(queries), self.dim)
        nq = len(queries)
        if k < 0:
            raise ValueError("k must be >= 0")
        if k == 0 or nq == 0 or self.ntotal == 0:
            return _empty(nq, k)
        # Faiss GPU's k-selection stops at GPU_MAX_K; larger k (full rankings) stays on CPU.
        device = self._device if self._device is not None and k <= self._device.max_k else None
        if allowed_ids is None:
            if device is not None:
                return device.search(queries, k)
            return self._search_unfiltered(queries, k)
        filt = self._prepare_filter(_as_ids(allowed_ids))
        allowed = filt.allowed
        if len(allowed) == 0:
            return _empty(nq, k)
        if device is not None:
            scores, labels, self.last_filter_stats = filtered_search(
                device, queries, k, allowed, ntotal=self.ntotal, gather=self._filter_gather(filt)
            )
            return scores, labels
        if self.kind == "flat" or len(allowed) <= EXACT_FILTER_MAX:
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

    # ----- persistence -------------------------------------------------------------------

    def save(self, directory: str | Path, *, meta: dict[str, Any]) -> None:
        """Write ``index.faiss`` + ``meta.json`` into ``directory`` without a torn state.

        Files go to a temporary sibling directory first, which is then renamed into place.
        An existing ``directory`` is moved aside and deleted only after the new one is in
        place, so a failure at any point leaves the old index loadable. Prefer
        :func:`save_version`, which never replaces anything.
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            self._write_files(tmp, meta)
            if directory.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
                os.replace(directory, old / "prev")
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _write_files(self, directory: Path, meta: dict[str, Any]) -> None:
        full_meta = {
            **meta,
            "count": self.ntotal,
            "dim": self.dim,
            "kind": self.kind,
            "nprobe": self.nprobe,
            "format": FORMAT,
        }
        faiss.write_index(self._index, str(directory / INDEX_FILE))
        meta_path = directory / META_FILE
        meta_path.write_text(json.dumps(full_meta, indent=2, sort_keys=True, default=str))
        for path in (directory / INDEX_FILE, meta_path):
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())

    @classmethod
    def load(cls, directory: str | Path) -> tuple[VectorIndex, dict[str, Any]]:
        """Load a directory written by :meth:`save`; verifies the vector count against meta.

        Raises:
            IndexCorruptError: missing files or ``ntotal != meta["count"]``.
        """
        directory = Path(directory)
        index_path, meta_path = directory / INDEX_FILE, directory / META_FILE
        if not index_path.is_file() or not meta_path.is_file():
            raise IndexCorruptError(f"{directory}: missing {INDEX_FILE} or {META_FILE}")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise IndexCorruptError(f"{meta_path}: invalid JSON ({exc})") from exc
        try:
            raw = faiss.read_index(str(index_path))
        except RuntimeError as exc:
            raise IndexCorruptError(f"{index_path}: unreadable ({exc})") from exc
        index = cls(raw, nprobe=int(meta.get("nprobe", DEFAULT_NPROBE)))
        if index.ntotal != int(meta.get("count", -1)):
            raise IndexCorruptError(
                f"{directory}: index holds {index.ntotal} vectors, meta says {meta.get('count')}"
            )
        if "dim" in meta and int(meta["dim"]) != index.dim:
            raise IndexCorruptError(f"{directory}: dim {index.dim} != meta dim {meta['dim']}")
        return index, meta


# ----- versioned storage -----------------------------------------------------------------


def new_version_name() -> str:
    """Sortable, unique-enough version name, e.g. ``v20261121T150102123456``."""
    return time.strftime("v%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time_ns() % 10**9 // 1000:06d}"


def save_version(
    root: str | Path, index: VectorIndex, meta: dict[str, Any], *, name: str | None = None
) -> str:
    """Write ``root/<name>/`` atomically; never overwrites an existing version.

    Returns:
        The version directory name.

    Raises:
        FileExistsError: ``root/<name>`` already exists.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = name or new_version_name()
    if "/" in name or name.startswith("."):
        raise ValueError(f"invalid version name {name!r}")
    target = root / name
    if target.exists():
        raise FileExistsError(f"index version {name} already exists in {root}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        index._write_files(tmp, {**meta, "version": name})
        if target.exists():  # lost a race with another writer
            raise FileExistsError(f"index version {name} already exists in {root}")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name


def load_version(root: str | Path, name: str | None = None) -> tuple[VectorIndex, dict[str, Any]]:
    """Load ``root/<name>/``, or the version named by ``root/CURRENT`` when ``name`` is None."""
    root = Path(root)
    name = name or current_version(root)
    if name is None:
        raise FileNotFoundError(f"no current index version in {root}")
    return VectorIndex.load(root / name)


def list_versions(root: str | Path) -> list[str]:
    """Complete version directories under ``root``, oldest first (temp dirs excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file()
    )


def set_current(root: str | Path, name: str) -> None:
    """Point ``root/CURRENT`` at version ``name`` with one atomic rename (the index swap)."""
    root = Path(root)
    if not (root / name / META_FILE).is_file():
        raise FileNotFoundError(f"index version {name} not found in {root}")
    fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", dir=root)
    with os.fdopen(fd, "w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT_FILE)


def current_version(root: str | Path) -> str | None:
    """The version named by ``root/CURRENT``, or None."""
    path = Path(root) / CURRENT_FILE
    if not path.is_file():
        return None
    return path.read_text().strip() or None


__all__ = [
    "DEFAULT_NPROBE",
    "EXACT_FILTER_MAX",
    "THIN_SUBSET_MAX",
    "IVF_THRESHOLD",
    "IndexCorruptError",
    "VectorIndex",
    "choose_nlist",
    "configure_threads",
    "current_version",
    "list_versions",
    "load_version",
    "new_version_name",
    "save_version",
    "set_current",
]
