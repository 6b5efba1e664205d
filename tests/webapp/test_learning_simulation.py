"""The learning-loop simulation's own plumbing (the full stream is a benchmark, not a test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.enqueue import enqueue_now
from webapp.learning.models import IndexVersion
from webapp.learning.simulation import SimConfig, Simulation
from webapp.learning.tasks import sync_index

pytestmark = pytest.mark.django_db


def test_index_syncs_are_coalesced_however_they_are_sent(tmp_path: Path) -> None:
    """Gallery enrichment sends the sync with apply_async, the catalogue receivers with delay:
    inside the block both are only noted, and `sync()` runs the task once."""
    sim = Simulation(SimConfig(root=tmp_path), log=lambda _message: None)
    real_delay, real_apply_async = sync_index.delay, sync_index.apply_async
    with sim.coalesced_index_sync():
        enqueue_now(sync_index)  # the path webapp.matching.gallery takes
        sync_index.delay()
        assert sim.sync_wanted
        assert not IndexVersion.objects.exists()  # nothing ran yet
    assert (sync_index.delay, sync_index.apply_async) == (real_delay, real_apply_async)
