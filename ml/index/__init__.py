"""Faiss vector index with explicit int64 ids, exact filters and atomic saves.

One concept a module: :mod:`.core` (:class:`VectorIndex`: construction, ids, mutation, the
search dispatch), :mod:`.filtered` (exact filtered search on CPU), :mod:`.tuning` (nprobe and
nlist), :mod:`.storage` (atomic save and load), :mod:`.gpu` (filtered search for devices that
ignore Faiss's selectors), :mod:`.versions` (versioned directories with a ``CURRENT``
pointer). Callers import from here: ``from ml.index import VectorIndex``.
"""

from ml.index.core import (
    DEFAULT_NPROBE,
    EXACT_FILTER_MAX,
    INDEX_FILE,
    IVF_THRESHOLD,
    META_FILE,
    THIN_SUBSET_MAX,
    IndexCorruptError,
    VectorIndex,
    choose_nlist,
    configure_threads,
)
from ml.index.versions import (
    current_version,
    list_versions,
    load_version,
    new_version_name,
    save_version,
    set_current,
)

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
    "current_version",
    "list_versions",
    "load_version",
    "new_version_name",
    "save_version",
    "set_current",
]
