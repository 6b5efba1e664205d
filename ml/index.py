"""Faiss vector index with explicit int64 ids, exact filters and atomic versioned saves.

Vectors are L2-normalised embeddings, so inner product = cosine similarity.

Index type by size:

* below :data:`IVF_THRESHOLD` vectors: ``IndexIDMap2(IndexFlatIP)``, exact;
* from :data:`IVF_THRESHOLD` up: ``IndexIVFFlat`` (inner product) trained on the data, with a
  hashtable direct map so that arbitrary ids can be removed and reconstructed.

Filtered search (``allowed_ids``) is always exact about the filter: Faiss's ``IDSelector``
guarantees no id outside the set is returned, and on IVF a small allowed set is searched by
brute force over its reconstructed vectors, so an item can never be missed because its inverted
list was not probed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

_faiss: Any = faiss  # untyped access to SWIG names the stubs lack

# Below this many vectors a flat index is exact and fast enough (to be re-measured on the
# production catalogue; see docs/benchmarks.md).
IVF_THRESHOLD = 200_000
DEFAULT_NPROBE = 32
# IVF + filter: up to this many allowed ids are scored exactly by brute force.
EXACT_FILTER_MAX = 50_000
# k-means wants roughly 39+ training points per centroid.
MIN_POINTS_PER_CENTROID = 39

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
    """Number of IVF lists for ``n`` vectors: ~4 sqrt(n), limited by the training set size."""
    nlist = int(4 * np.sqrt(max(n, 1)))
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
        self._ids_cache: np.ndarray | None = None

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
        cls, ids: np.ndarray, vectors: np.ndarray, *, kind: str = "auto", nlist: int | None = None
    ) -> VectorIndex:
        """Build from scratch, choosing the index type by size.

        Args:
            ids: ``[n]`` int64, unique.
            vectors: ``[n, dim]`` float32, L2-normalised.
            kind: ``"auto"`` (by :data:`IVF_THRESHOLD`), ``"flat"`` or ``"ivf"``.
            nlist: IVF lists; default :func:`choose_nlist`.
        """
        ids = _as_ids(ids)
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if vectors.ndim != 2:
            raise ValueError(f"expected vectors [n, dim], got shape {vectors.shape}")
        dim = vectors.shape[1]
        if kind == "auto":
            kind = "ivf" if len(ids) >= IVF_THRESHOLD else "flat"
        if kind == "flat":
            index = cls.create(dim)
        elif kind == "ivf":
            nlist = nlist or choose_nlist(len(ids))
            if len(ids) < nlist:
                raise ValueError(f"IVF with {nlist} lists needs at least {nlist} training vectors")
            quantizer = faiss.IndexFlatIP(dim)
            ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.train(_as_vectors(vectors, dim))
            # Hashtable direct map: remove()/reconstruct() with arbitrary (non-sequential) ids.
            ivf.set_direct_map_type(_faiss.DirectMap.Hashtable)
            index = cls(ivf)
            index._owned.append(quantizer)
        else:
            raise ValueError(f"kind must be auto, flat or ivf, got {kind!r}")
        index.add(ids, vectors)
        return index

    # ----- basic properties ---------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def faiss_index(self) -> Any:
        """The wrapped Faiss index (for inspection and benchmarks)."""
        return self._index

    def __len__(self) -> int:
        return self.ntotal

    def ids(self) -> np.ndarray:
        """All stored ids ``[ntotal]`` int64 (flat: insertion order; IVF: by inverted list)."""
        if self._ids_cache is None:
            self._ids_cache = self._read_ids()
        return self._ids_cache.copy()

    def _read_ids(self) -> np.ndarray:
        if self.kind == "flat":
            return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        invlists = self._index.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(invlists.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """``[n]`` bool: which of ``ids`` are stored."""
        if self._ids_cache is None:
            self._ids_cache = self._read_ids()
        return np.isin(_as_ids(ids), self._ids_cache)

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
        if self.ntotal and self.contains(ids).any():
            dup = ids[self.contains(ids)][:5].tolist()
            raise ValueError(f"ids already in the index: {dup} (use upsert)")
        self._ids_cache = None
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids [n]`` (missing ones are ignored); returns how many were removed."""
        ids = _as_ids(ids)
        if len(ids) == 0 or self.ntotal == 0:
            return 0
        if self.kind == "ivf":
            # The hashtable direct map only accepts IDSelectorArray, of ids actually present.
            present = np.ascontiguousarray(np.unique(ids[self.contains(ids)]))
            if len(present) == 0:
                return 0
            sel = faiss.IDSelectorArray(len(present), faiss.swig_ptr(present))
            removed = int(self._index.remove_ids(sel))
        else:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
        self._ids_cache = None
        return removed

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of existing ids and add new ones."""
        self.remove(ids)
        self.add(ids, vectors)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids [n]`` -> ``[n, dim]``; ``KeyError`` for an unknown id."""
        ids = _as_ids(ids)
        if len(ids) == 0:
            return np.empty((0, self.dim), np.float32)
        missing = ids[~self.contains(ids)]
        if len(missing):
            raise KeyError(f"ids not in the index: {missing[:5].tolist()}")
        # Both IndexIDMap2 and IVF with a direct map reconstruct by external id.
        out: np.ndarray = self._index.reconstruct_batch(ids)
        return out.astype(np.float32, copy=False)

    # ----- search ------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """k nearest stored vectors by inner product.

        Args:
            queries: ``[q, dim]`` float32, L2-normalised.
            k: results per query.
            allowed_ids: if given, only these ids may be returned (exactly honoured).

        Returns:
            ``(cosine [q, k] float32, ids [q, k] int64)``, best first; where fewer than ``k``
            results exist the id is ``-1`` and the cosine ``-inf``.
        """
        queries = _as_vectors(np.atleast_2d(queries), self.dim)
        nq = len(queries)
        if k < 0:
            raise ValueError("k must be >= 0")
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        labels = np.full((nq, k), -1, dtype=np.int64)
        if k == 0 or nq == 0 or self.ntotal == 0:
            return scores, labels
        if allowed_ids is not None:
            allowed = np.unique(_as_ids(allowed_ids))
            if len(allowed) == 0:
                return scores, labels
            if self.kind == "ivf" and len(allowed) <= EXACT_FILTER_MAX:
                return self._search_exact_subset(queries, k, allowed)
            sel = faiss.IDSelectorBatch(allowed)
            params = (
                _faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)
                if self.kind == "ivf"
                else _faiss.SearchParameters(sel=sel)
            )
        elif self.kind == "ivf":
            params = _faiss.SearchParametersIVF(nprobe=self.nprobe)
        else:
            params = None
        kk = min(k, self.ntotal)
        # faiss.contrib.torch_utils (imported by pytorch-metric-learning) replaces search() with
        # a version without ``params``; the original numpy method survives as search_numpy.
        search = getattr(self._index, "search_numpy", self._index.search)
        dist, found = search(queries, kk, params=params)
        found = found.astype(np.int64, copy=False)
        valid = found >= 0
        scores[:, :kk] = np.where(valid, dist, -np.inf)
        labels[:, :kk] = found
        return scores, labels

    def _search_exact_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        present = allowed[self.contains(allowed)]
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        labels = np.full((len(queries), k), -1, dtype=np.int64)
        if len(present) == 0:
            return scores, labels
        sims = queries @ self.reconstruct(present).T  # [q, m]
        kk = min(k, len(present))
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        scores[:, :kk] = np.take_along_axis(sims, top, axis=1)
        labels[:, :kk] = present[top]
        return scores, labels

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
