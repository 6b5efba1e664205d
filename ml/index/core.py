"""VectorIndex: Faiss with explicit int64 ids, the index type by size, exact filters, devices.

Vectors are L2-normalised embeddings, so inner product = cosine similarity.

Index type by size (:meth:`VectorIndex.build`; numbers in docs/benchmarks.md, "Index at 1M
vectors"):

* below :data:`IVF_THRESHOLD` vectors: ``IndexIDMap2(IndexFlatIP)``, exact;
* from :data:`IVF_THRESHOLD` up: IVF (inner product, ``nlist ~ 2 sqrt(n)``) with vectors stored
  as float16 (``IndexIVFScalarQuantizer(QT_fp16)``: same recall as float32 on our benchmark,
  ~1.35x the speed, half the memory) and a hashtable direct map so that arbitrary ids can be
  removed and reconstructed (HNSW could not remove). ``nprobe`` is tuned at build time on a
  sample of the data to reach ``TUNE_RECALL`` recall@10 against exact search
  (:mod:`ml.index.tuning`).

Filtered search (``allowed_ids``) honours the filter exactly, in 100% of results: on CPU
through :mod:`ml.index.filtered` (brute force over the allowed vectors, or ``IDSelector`` over
the probed IVF lists with a per-query check that a sparse filter cannot starve a query).

Faiss GPU ignores selectors, so on a GPU device filtered search goes through
:mod:`ml.index.gpu` instead (over-fetch + membership test, or brute force over the subset);
``use_device("cpu-no-selector")`` runs that same code on CPU for tests and benchmarks.
"""

from __future__ import annotations

import os
from typing import Any

import faiss
import numpy as np

from ml.index import gpu as gpu_search
from ml.index.base import DEFAULT_NPROBE, _as_ids, _as_vectors, _empty
from ml.index.filtered import EXACT_FILTER_MAX, THIN_SUBSET_MAX, FilteredSearch
from ml.index.gpu import SearchDevice, filtered_search
from ml.index.storage import INDEX_FILE, META_FILE, IndexCorruptError, IndexStorage
from ml.index.tuning import NprobeTuning, choose_nlist

_faiss: Any = faiss  # untyped access to SWIG names the stubs lack

# Flat (exact) below, IVF from here up: measured (bench/index_scale.py, docs/benchmarks.md)
# as the size where exact search drops below the 5,000 queries/s target (batches of 1000,
# 2 shared cores) while tuned IVF stays far above it. Tuned IVF was faster at every size
# measured (from 1,000 vectors), so the pure speed crossover would make every index IVF.
IVF_THRESHOLD = 10_000
CODECS = ("fp16", "fp32")
DEVICES = ("cpu", "gpu", "cpu-no-selector", "auto")


def configure_threads(n: int | None = None) -> None:
    """Faiss uses OpenMP; undo ``OMP_NUM_THREADS=1`` left behind by other libraries."""
    faiss.omp_set_num_threads(n or os.cpu_count() or 1)


class VectorIndex(FilteredSearch, NprobeTuning, IndexStorage):
    """Inner-product index over L2-normalised vectors with explicit int64 ids.

    Attributes:
        dim: vector size.
        kind: ``"flat"`` or ``"ivf"``.
        nprobe: inverted lists visited per IVF search (ignored by flat indexes).
    """

    def __init__(self, index: faiss.Index, *, nprobe: int = DEFAULT_NPROBE) -> None:
        super().__init__(index, nprobe=nprobe)
        self._device: SearchDevice | None = None  # None: Faiss CPU with selectors
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
        self._flat_rows = None  # rows move when vectors are added or removed
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
        return self._search_filtered(queries, k, filt)


__all__ = [
    "DEFAULT_NPROBE",
    "EXACT_FILTER_MAX",
    "INDEX_FILE",
    "IVF_THRESHOLD",
    "META_FILE",
    "THIN_SUBSET_MAX",
    "IndexCorruptError",
    "VectorIndex",
    "choose_nlist",
    "configure_threads",
]
