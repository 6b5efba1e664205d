"""Freed memory handed back to the system between worker tasks.

`scripts/env.sh` preloads jemalloc with decay off (`dirty_decay_ms:-1`): freed pages stay
mapped, so training and batched inference do not page-fault their buffers again every step
(3-4x faster, docs/benchmarks.md, "CPU allocator"). A long-lived worker that matches photos,
syncs indexes and trains in turn then only grows: the learning-loop simulation reached 24 GB
and was killed after ~350 photos of index syncs (docs/benchmarks.md, "Learning loop"). After
each task, when the freed-but-kept memory passes SKULENS_RETAINED_MEMORY_MB, every arena is
purged once; within a task nothing changes.
"""

from __future__ import annotations

import ctypes
import logging
from functools import cache

logger = logging.getLogger(__name__)

_ALL_ARENAS = 4096  # MALLCTL_ARENAS_ALL


@cache
def _mallctl() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """jemalloc's control function when jemalloc is this process's allocator, else None."""
    try:
        function = ctypes.CDLL(None).mallctl
    except (AttributeError, OSError):
        return None
    function.restype = ctypes.c_int
    return function


def _read_size(mallctl: ctypes._CFuncPtr, name: bytes) -> int:  # type: ignore[name-defined]
    value, size = ctypes.c_size_t(0), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
    if mallctl(name, ctypes.byref(value), ctypes.byref(size), None, 0) != 0:
        raise OSError(f"mallctl {name.decode()} failed")
    return value.value


def retained_bytes() -> int | None:
    """Memory the allocator keeps mapped beyond what is in use (None: not jemalloc)."""
    mallctl = _mallctl()
    if mallctl is None:
        return None
    epoch = ctypes.c_uint64(1)
    try:
        mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.sizeof(epoch))  # refresh stats
        return max(0, _read_size(mallctl, b"stats.resident")
                   - _read_size(mallctl, b"stats.allocated"))
    except OSError:
        return None


def release_retained_memory(*, above_bytes: int) -> int:
    """Purge every arena when more than `above_bytes` is freed but kept; bytes released."""
    kept = retained_bytes()
    mallctl = _mallctl()
    if kept is None or mallctl is None or kept <= above_bytes:
        return 0
    if mallctl(f"arena.{_ALL_ARENAS}.purge".encode(), None, None, None, 0) != 0:
        return 0
    after = retained_bytes() or 0
    released = max(0, kept - after)
    logger.info("released %.0f MB of freed memory kept by the allocator", released / 2**20)
    return released
