"""Audit history: the generic service, and the per-SKU and per-user views."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from tests.webapp.conftest import logged_in
from tests.webapp.factories import DecisionFactory, IndexVersionFactory
from webapp.audit.models import AuditEntry
from webapp.audit.selectors import audit_entries
from webapp.audit.services import audit_record, field_changes
from webapp.catalog.services import sku_create, sku_merge, sku_update
from webapp.matching.models import Decision


def test_audit_record_names_actor_object_and_sku(appraiser, catalogue_admin) -> None:
    sku = sku_create(actor=catalogue_admin, code="A", name="A", category="C", brand="B",
                     series="S")
    decision = DecisionFactory(request__created_by=appraiser, outcome=Decision.Outcome.OTHER_SKU,
                               sku=sku)
    # What webapp.matching.decisions.decision_record is to call.
    entry = audit_record(actor=appraiser, action="decision.record", obj=decision,
                         changes={"outcome": [None, "other_sku"], "sku": [None, sku.code]})
    assert (entry.actor, entry.actor_name, entry.sku, entry.object_id) == (
        appraiser, appraiser.username, sku, str(decision.pk))
    assert entry.content_type.model == "decision"

    # A promotion: no SKU, and the system as actor.
    version = IndexVersionFactory(name="idx-x", model_version="m")
    system = audit_record(actor=None, action="model.promote", obj=version,
                          changes={"model": ["old", "new"]})
    assert system.actor is None and system.actor_name == "" and system.sku is None
    assert audit_record(actor=AnonymousUser(), action="x").actor is None

    assert [e.action for e in audit_entries(actor_id=appraiser.pk)] == ["decision.record"]
    assert {e.action for e in audit_entries(sku_ids=[sku.pk])} == {"sku.create",
                                                                   "decision.record"}


def test_field_changes_lists_only_differences() -> None:
    assert field_changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {
        "b": [2, 3], "c": [None, 4]}


def test_history_pages_per_sku_and_per_user(catalogue_admin, appraiser) -> None:
    a = sku_create(actor=catalogue_admin, code="A", name="A", category="C", brand="B", series="S")
    b = sku_create(actor=catalogue_admin, code="B", name="B", category="C", brand="B", series="S")
    sku_update(sku=a, actor=catalogue_admin, colour="red")
    sku_merge(source=a, target=b, actor=catalogue_admin)
    client = logged_in(catalogue_admin)

    # B's history includes what happened to A before it was merged in.
    page = client.get(reverse("catalog:sku_detail", args=[b.pk])).content.decode()
    assert "sku.merge_into" in page and "sku.update" in page and "red" in page

    mine = client.get(reverse("catalog:audit_user", args=[catalogue_admin.pk])).content.decode()
    assert f"History of {catalogue_admin.username}" in mine and "sku.merge" in mine
    theirs = client.get(reverse("catalog:audit_user", args=[appraiser.pk])).content.decode()
    assert "No changes recorded yet" in theirs

    filtered = client.get(reverse("catalog:audit"), {"action": "sku.update"}).content.decode()
    assert filtered.count('class="pill action"') == 1
    assert AuditEntry.objects.count() > 5
