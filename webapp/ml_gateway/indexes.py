"""Index versions on disk: the active one cached per process, and the builds of new ones.

Callers hand in plain data (a version's name, reference ids and their vectors); the
VectorIndex objects stay inside the gateway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from ml.index import INDEX_FILE, IndexCorruptError, VectorIndex
from webapp.ml_gateway import runtime
from webapp.ml_gateway.sources import IndexFiles, IndexUnavailable, sources_installed

logger = logging.getLogger(__name__)


def index_path(name: str) -> Path:
    return settings.INDEX_DIR / name


def index_files_present(name: str) -> bool:
    """Whether index version `name`'s index file is on this machine's disk."""
    return (index_path(name) / INDEX_FILE).is_file()


def _load_checked(version: IndexFiles) -> VectorIndex:
    """The version's index; IndexUnavailable when its files are missing, corrupt or hold
    another number of vectors than the database recorded."""
    name, expected = version.name, version.vector_count
    try:
        sources_installed().index_local_ensure(name)  # published on another machine: fetch it
        index, _meta = VectorIndex.load(index_path(name))
    except (FileNotFoundError, IndexCorruptError) as exc:
        raise IndexUnavailable(f"Index files for {name} are missing or corrupt: {exc}") from exc
    if index.ntotal != expected:
        raise IndexUnavailable(
            f"Index {name} holds {index.ntotal} vectors but the database recorded {expected}"
        )
    return index


def _loadable_index(active: IndexFiles) -> tuple[IndexFiles, VectorIndex]:
    """The active version's index or, when its files are unusable, the newest earlier ready
    version of the same model that loads (logged as an error: the catalogue's latest changes
    are missing from it until the next publish, which rebuilds)."""
    try:
        return active, _load_checked(active)
    except IndexUnavailable as exc:
        problem = exc
    for version in sources_installed().earlier_indexes(active.name)[:5]:
        try:
            index = _load_checked(version)
        except IndexUnavailable:
            continue
        logger.error("%s; serving the previous version %s until the next publish rebuilds "
                     "it (manage.py build_index --full)", problem, version.name)
        return version, index
    raise IndexUnavailable(f"{problem}; no earlier version loads either: run manage.py "
                           "build_index --full") from problem


class _ActiveIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: str | None = None  # the active row this cache was loaded for
        self._name: str | None = None  # the version actually served (a fallback, at worst)
        self._index: VectorIndex | None = None
        self._model_ref = ""

    def get(self) -> tuple[str, VectorIndex, str]:
        """(index version name, index, model ref): a match uses all three together."""
        active = sources_installed().active_index()
        if active is None:
            raise IndexUnavailable("No search index has been built yet.")
        with self._lock:
            if self._active != active.name or self._index is None:
                started = time.perf_counter()
                version, index = _loadable_index(active)
                index.use_device("auto")  # a GPU replica when faiss-gpu sees one
                self._active, self._name, self._index = active.name, version.name, index
                self._model_ref = version.model_ref or runtime.default_model_ref()
                logger.info(
                    "loaded index %s (%d vectors) in %.2f s",
                    version.name, index.ntotal, time.perf_counter() - started,
                )
            assert self._name is not None
            return self._name, self._index, self._model_ref

    def loaded_name(self) -> str | None:
        """The index version this process holds (None: none loaded yet)."""
        return self._name

    def forget(self) -> None:
        with self._lock:
            self._active, self._name, self._index = None, None, None


active_index = _ActiveIndex()


def indexed_reference_ids() -> np.ndarray:
    """[n] ids of the references in the active index."""
    return active_index.get()[1].ids()


# ----- building versions (index publishing, webapp.learning.services) ----------------------


class IndexDraft:
    """A version being built in memory: its ids, and saving it as a new version directory."""

    def __init__(self, index: VectorIndex) -> None:
        self._index = index

    @property
    def ntotal(self) -> int:
        return self._index.ntotal

    def ids(self) -> np.ndarray:
        """[n] reference ids it holds."""
        return self._index.ids()

    def save(self, name: str, *, meta: dict[str, Any]) -> None:
        """Write it atomically as version directory `name`."""
        self._index.save(index_path(name), meta=meta)


@dataclass(frozen=True)
class IndexUpdate:
    draft: IndexDraft
    added: list[int]
    removed: list[int]


def index_update(
    *,
    parent: str | None,
    wanted: Sequence[int],
    vectors_of: Callable[[list[int]], np.ndarray],
    model_ref: str,
) -> IndexUpdate:
    """The index holding exactly the `wanted` reference ids: the `parent` version's, with the
    difference added and removed, or (no parent, unusable files, or a size that calls for
    another index type) a fresh build sized by `VectorIndex.build`. `vectors_of(ids)` gives
    the references' vectors [len(ids), dim]; `model_ref`'s dimension sizes an empty index."""
    index: VectorIndex | None = None
    if parent is not None:
        try:
            index, _ = VectorIndex.load(index_path(parent))
        except (FileNotFoundError, IndexCorruptError) as exc:
            logger.error("index files of %s are unusable (%s): rebuilding", parent, exc)
        # Incremental updates keep the index type; rebuild once its size calls for another
        # (flat grown to IVF_THRESHOLD, IVF shrunk, or IVF lists trained for another size).
        if index is not None and index.needs_rebuild:
            logger.info("index %s (%d vectors, %s) needs a rebuild", parent, index.ntotal,
                        index.kind)
            index = None
    if index is None:
        ids = sorted(wanted)
        if ids:
            index = VectorIndex.build(np.asarray(ids, dtype=np.int64), vectors_of(ids))
        else:
            index = VectorIndex.create(runtime.embedding_dim(model_ref))
        return IndexUpdate(IndexDraft(index), ids, [])
    parent_ids = {int(i) for i in index.ids()}
    to_add = sorted(set(wanted) - parent_ids)
    to_remove = sorted(parent_ids - set(wanted))
    if to_remove:
        index.remove(np.asarray(to_remove, dtype=np.int64))
    for start in range(0, len(to_add), 10_000):
        chunk = to_add[start : start + 10_000]
        index.add(np.asarray(chunk, dtype=np.int64), vectors_of(chunk))
    return IndexUpdate(IndexDraft(index), to_add, to_remove)


def index_vectors(
    name: str, *, select: Callable[[np.ndarray], Sequence[int]], chunk: int = 1000
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The stored vectors of version `name`: ``select(ids [n])`` picks the ids wanted, which
    come back in chunks of (ids [m], vectors [m, dim]). Raises FileNotFoundError or
    ValueError (corrupt files) before the first chunk."""
    index, _ = VectorIndex.load(index_path(name))
    ids = np.asarray(select(index.ids()), dtype=np.int64)
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        yield part, index.reconstruct(part)


def neighbours(
    ids: np.ndarray, vectors: np.ndarray, *, k: int, chunk: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Each vector's `k` nearest among `vectors [n, dim]` (itself included, ids [n]), by
    inner product in an index sized by `VectorIndex.build`: (first row, cosines [m, k],
    ids [m, k], -1 where fewer were found) per chunk of `chunk` rows."""
    index = VectorIndex.build(ids, vectors)
    for start in range(0, len(ids), chunk):
        cos, found = index.search(vectors[start : start + chunk], k)
        yield start, cos, found
