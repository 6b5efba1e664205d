"""The catalogue's signals (webapp.catalog.signals): sent after commit, robustly, and the
merge's inside its transaction, rolled back with it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.webapp.factories import CandidateFactory, MatchRequestFactory
from webapp.catalog.models import SKU
from webapp.catalog.services import sku_create, sku_merge
from webapp.catalog.signals import catalogue_changed, sku_merged
from webapp.matching.models import Candidate


def _new_sku(actor: Any, code: str) -> SKU:
    return sku_create(actor=actor, code=code, name=code, category="C", brand="B", series="S")


@pytest.mark.django_db(transaction=True)
def test_a_failing_receiver_is_logged_and_the_committed_change_stays(
    catalogue_admin, monkeypatch, caplog
) -> None:
    synced: list[int] = []
    monkeypatch.setattr("webapp.learning.tasks.sync_index.delay", lambda: synced.append(1))

    def broken(sender: type[SKU], **kwargs: Any) -> None:
        raise RuntimeError("a receiver's bug")

    catalogue_changed.connect(broken, dispatch_uid="test_broken_receiver")
    try:
        with caplog.at_level(logging.ERROR, logger="django.dispatch"):
            _new_sku(catalogue_admin, "KEPT-1")
    finally:
        catalogue_changed.disconnect(dispatch_uid="test_broken_receiver")
    assert SKU.objects.filter(code="KEPT-1").exists()
    assert "a receiver's bug" in caplog.text
    assert synced == [1]


@pytest.mark.django_db(transaction=True)
def test_the_broker_down_at_enqueue_loses_no_catalogue_change(
    catalogue_admin, monkeypatch, caplog
) -> None:
    def down() -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("webapp.learning.tasks.sync_index.delay", down)
    with caplog.at_level(logging.ERROR, logger="webapp.learning.receivers"):
        _new_sku(catalogue_admin, "KEPT-2")
    assert SKU.objects.filter(code="KEPT-2").exists()
    assert "the hourly sync will catch up" in caplog.text


def test_a_failing_merge_receiver_rolls_the_merge_back(catalogue_admin, appraiser) -> None:
    source, target = _new_sku(catalogue_admin, "SRC-1"), _new_sku(catalogue_admin, "DST-1")
    candidate = CandidateFactory(request=MatchRequestFactory(created_by=appraiser), sku=source,
                                 score=0.5, cosine=0.0, query_photo__width=1,
                                 query_photo__height=1)

    def broken(sender: type[SKU], **kwargs: Any) -> dict[str, int]:
        raise RuntimeError("a receiver's bug")

    sku_merged.connect(broken, dispatch_uid="test_broken_merge_receiver")
    try:
        with pytest.raises(RuntimeError, match="a receiver's bug"):
            sku_merge(source=source, target=target, actor=catalogue_admin)
    finally:
        sku_merged.disconnect(dispatch_uid="test_broken_merge_receiver")
    source.refresh_from_db()
    assert source.is_active and source.merged_into is None
    assert Candidate.objects.get(pk=candidate.pk).sku == source
