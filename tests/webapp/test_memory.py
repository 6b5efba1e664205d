"""Freed memory the allocator keeps is handed back between worker tasks (webapp.memory)."""

from __future__ import annotations

import numpy as np
import pytest

from webapp import memory
from webapp.config.celery import app as celery_app

needs_jemalloc = pytest.mark.skipif(
    memory.retained_bytes() is None,
    reason="jemalloc is not this process's allocator (scripts/env.sh preloads it)")


def _free_growing_buffers(count: int = 30) -> None:
    """What index syncs and batches of every size do: ever larger buffers, each freed."""
    for i in range(count):
        buffer = np.ones((1000 + 50 * i) * 1024 * 32, np.float32)
        del buffer


@needs_jemalloc
def test_kept_memory_is_released_past_the_limit() -> None:
    _free_growing_buffers()
    kept = memory.retained_bytes()
    assert kept is not None and kept > 256 * 2**20  # decay off: the freed pages stay
    assert memory.release_retained_memory(above_bytes=kept + 2**30) == 0  # under the limit
    released = memory.release_retained_memory(above_bytes=64 * 2**20)
    assert released > 0.8 * kept
    assert (memory.retained_bytes() or 0) < 64 * 2**20


def test_every_task_ends_with_the_check(monkeypatch, settings) -> None:
    settings.RETAINED_MEMORY_MB = 123
    limits: list[int] = []
    monkeypatch.setattr(memory, "release_retained_memory",
                        lambda *, above_bytes: limits.append(above_bytes) or 0)

    @celery_app.task(name="tests.memory.noop")
    def noop() -> int:
        return 7

    assert noop.apply().get() == 7
    assert limits == [123 * 2**20]
