"""The appraiser's tools (issue 12): words about the item, the query crop, undo, own history,
and the "new SKU" outcome, through services, pages and the API."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from tests.webapp.conftest import demo_photo_upload, logged_in
from tests.webapp.factories import (
    CandidateFactory,
    DecisionFactory,
    MatchRequestFactory,
    RoleUserFactory,
    SKUImageFactory,
)
from tests.webapp.test_catalog_api import token_client
from webapp.accounts.roles import Role
from webapp.audit.models import AuditEntry
from webapp.catalog.models import SKU, SKUImage
from webapp.catalog.selectors import sku_attribute_keys
from webapp.matching.decisions import DecisionError, decision_record, decision_undo
from webapp.matching.models import Decision, MatchRequest
from webapp.matching.query_inputs import (
    MAX_QUERY_TEXT_CHARS,
    MAX_QUERY_TEXT_WORDS,
    QueryInputError,
    soft_attributes_clean,
)
from webapp.matching.requests import match_request_create
from webapp.matching.runner import match_request_run
from webapp.matching.selectors import request_history
from webapp.review.crops import query_photo_crop
from webapp.review.models import BadCase, CatalogueGap, FailureCause
from webapp.review.services import bad_case_resolve, bad_case_tag, catalogue_gap_close

DEMO_KEYS = ["colour", "material", "size", "hardware", "pattern"]


@pytest.fixture
def skus(db, demo_folder):
    """Three demo SKUs, imported but not indexed: enough where no match has to run."""
    from webapp.catalog.bulk import catalogue_import
    from webapp.catalog.importing import read_catalogue_csv

    rows = list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:3]
    assert not catalogue_import(rows=rows, image_root=demo_folder).errors
    return list(SKU.objects.order_by("code"))


@pytest.fixture
def other_appraiser(db):
    return RoleUserFactory(username="appraiser-2", role=Role.APPRAISER)


def _done(user, **words) -> MatchRequest:
    """A stored request marked done without running the model (no candidates)."""
    request = match_request_create(user=user, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")],
                                   **words)
    MatchRequest.objects.filter(pk=request.pk).update(status=MatchRequest.Status.DONE,
                                                      finished_at=timezone.now())
    request.refresh_from_db()
    return request


def _ran(user, **words) -> MatchRequest:
    request = match_request_create(user=user, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")],
                                   **words)
    assert match_request_run(request_id=request.pk)
    request.refresh_from_db()
    return request


def _age(decision: Decision, seconds: float) -> None:
    Decision.objects.filter(pk=decision.pk).update(
        decided_at=timezone.now() - timedelta(seconds=seconds))
    decision.refresh_from_db()


# ----- words about the item ------------------------------------------------------------------


def test_attribute_keys_are_the_sku_fields_then_the_catalogues_own(skus) -> None:
    SKU.objects.filter(pk=skus[0].pk).update(attributes={"hardware": "gold", "description": "x"})
    assert sku_attribute_keys() == DEMO_KEYS  # prose keys (description) are not offered


def test_words_are_stored_cleaned_with_the_catalogues_spelling(appraiser, skus) -> None:
    request = _done(appraiser, query_text="  red   leather\n Harbour\ttote ",
                    soft_attributes=[("Colour", " red "), ("HARDWARE", "gold"), ("size", "")])
    assert request.query_text == "red leather Harbour tote"
    assert request.soft_attributes == {"colour": "red", "hardware": "gold"}


@pytest.mark.parametrize("words,message", [
    ({"query_text": "x" * (MAX_QUERY_TEXT_CHARS + 1)}, "characters"),
    ({"query_text": " ".join(["w"] * (MAX_QUERY_TEXT_WORDS + 1))}, "words"),
    ({"soft_attributes": {"flavour": "mint"}}, "Unknown attribute 'flavour'"),
    ({"soft_attributes": [("colour", "red"), ("Colour", "blue")]}, "twice"),
    ({"soft_attributes": {"colour": ["red"]}}, "must be text"),
    ({"soft_attributes": {"colour": "r" * 61}}, "longer than 60"),
    ({"soft_attributes": [("", "red")]}, "without its attribute"),
    ({"soft_attributes": "colour=red"}, "object"),
])
def test_bad_words_are_refused_and_nothing_is_stored(appraiser, skus, words, message) -> None:
    with pytest.raises(QueryInputError, match=message):
        match_request_create(user=appraiser, uploads=[demo_photo_upload("DEMO-MAI-LUN-01")],
                             **words)
    assert not MatchRequest.objects.exists()


def test_at_most_eight_attributes() -> None:
    keys = [f"k{i}" for i in range(9)]
    assert len(soft_attributes_clean({k: "v" for k in keys[:8]}, known_keys=keys)) == 8
    with pytest.raises(QueryInputError, match="At most 8"):
        soft_attributes_clean({k: "v" for k in keys}, known_keys=keys)


def test_the_words_reach_the_evidence_stage_as_evidence(appraiser, catalogue, settings) -> None:
    """What the appraiser typed is fused with the picture (issue 12a's stage), never a filter:
    a wrong colour lowers a candidate but hides nobody."""
    settings.RERANK_EVIDENCE = ("spatial", "text", "attributes", "query_text", "soft_attributes")
    plain = _ran(appraiser)
    described = _ran(appraiser, query_text="Maison Aubert Lune quilted lambskin",
                     soft_attributes={"colour": "black", "hardware": "gold"})
    assert described.soft_attributes == {"colour": "black", "hardware": "gold"}
    candidates = list(described.candidates.all())
    top = candidates[0]
    assert top.sku.code == "DEMO-MAI-LUN-01"
    typed = {m["word"].casefold() for m in top.evidence["query_text"]["matches"]}
    assert {"lune", "lambskin"} <= typed and top.evidence["query_text"]["score"] > 0
    soft = {m["name"]: m["agrees"] for m in top.evidence["soft_attributes"]["matches"]}
    assert soft == {"colour": True, "hardware": True}
    assert top.evidence["contributions"]["query_text"] > 0
    assert top.evidence["contributions"]["soft_attributes"] > 0
    assert top.score >= plain.candidates.first().score
    # Same line, other colour: the stated colour counts against it, yet it stays a candidate.
    tan = next(c for c in candidates if c.sku.code == "DEMO-MAI-LUN-02")
    assert tan.evidence["soft_attributes"]["score"] < top.evidence["soft_attributes"]["score"]
    assert {c.sku_id for c in candidates} == {c.sku_id for c in plain.candidates.all()}
    # Switched off, the stage ignores them.
    settings.RERANK_EVIDENCE = ("spatial", "text", "attributes")
    ignored = _ran(appraiser, query_text="Maison Aubert Lune", soft_attributes={"colour": "black"})
    assert not ignored.candidates.first().evidence.get("query_text")
    assert not ignored.candidates.first().evidence.get("soft_attributes")


def test_upload_page_takes_words_and_the_result_page_shows_them(appraiser, skus) -> None:
    client = logged_in(appraiser)
    home = client.get(reverse("matching:home")).content.decode()
    assert 'name="query_text"' in home and '<option value="hardware">' in home
    response = client.post(reverse("matching:create"), {
        "photos": [demo_photo_upload("DEMO-MAI-LUN-01")], "query_text": "black quilted Lune",
        "attr_key": ["colour", "pattern"], "attr_value": ["black", "quilted"],
    })
    assert response.status_code == 302
    request = MatchRequest.objects.get()
    assert request.query_text == "black quilted Lune"
    assert request.soft_attributes == {"colour": "black", "pattern": "quilted"}
    page = client.get(reverse("matching:detail", args=[request.pk])).content.decode()
    assert "black quilted Lune" in page and 'id="query-words"' in page and "quilted" in page


def test_upload_page_refuses_bad_words_with_a_message(appraiser, skus) -> None:
    response = logged_in(appraiser).post(reverse("matching:create"), {
        "photos": [demo_photo_upload("DEMO-MAI-LUN-01")], "attr_key": ["flavour"],
        "attr_value": ["mint"],
    }, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "Unknown attribute" in response.content.decode()
    assert not MatchRequest.objects.exists()


def test_api_takes_and_returns_the_words(appraiser, skus) -> None:
    api = token_client(appraiser)
    created = api.post(reverse("api:match-create"), {
        "photos": [demo_photo_upload("DEMO-MAI-LUN-01")], "query_text": "tan lambskin bag",
        "soft_attributes": json.dumps({"colour": "tan", "material": "lambskin"}),
    })
    assert created.status_code == 202, created.content
    body = api.get(reverse("api:match-detail", args=[created.json()["id"]])).json()
    assert body["query_text"] == "tan lambskin bag"
    assert body["soft_attributes"] == {"colour": "tan", "material": "lambskin"}
    for bad, code in [("{not json", "invalid"), ('["colour"]', "invalid_query"),
                      ('{"flavour": "mint"}', "invalid_query")]:
        response = api.post(reverse("api:match-create"), {
            "photos": [demo_photo_upload("DEMO-MAI-LUN-01")], "soft_attributes": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == code
    assert MatchRequest.objects.count() == 1


# ----- the query crop ------------------------------------------------------------------------


def test_result_page_shows_the_crop_beside_the_reference_and_links_the_photo(
    appraiser, catalogue
) -> None:
    request = _ran(appraiser)
    photo = request.photos.get()
    client = logged_in(appraiser)
    url = reverse("matching:crop", args=[request.pk, photo.position])
    page = client.get(reverse("matching:detail", args=[request.pk])).content.decode()
    assert url in page and 'alt="query"' in page
    assert f'href="{photo.image.url}"' in page and "full photo" in page
    # Whatever the detector found, the served image is the stored box's isolated crop.
    photo.box, photo.box_source = [10.0, 20.0, 210.0, 170.0], "corrected"
    photo.save()
    response = client.get(url)
    assert response["Content-Type"] == "image/jpeg"
    served = Image.open(io.BytesIO(response.content))
    crop = query_photo_crop(photo)
    assert crop.size == (200, 150) and served.size == crop.size
    assert abs(np.asarray(served, dtype=float) - np.asarray(crop, dtype=float)).mean() < 8
    assert client.get(reverse("matching:crop", args=[request.pk, 7])).status_code == 404


def test_each_reference_says_whether_it_is_a_catalogue_image_or_a_confirmed_appraisal(
    appraiser,
) -> None:
    request = MatchRequestFactory(created_by=appraiser)
    catalogue_ref = SKUImageFactory()
    appraisal_ref = SKUImageFactory(source=SKUImage.Source.APPRAISAL)
    first = CandidateFactory(request=request, rank=1, sku=catalogue_ref.sku,
                             reference_image=catalogue_ref)
    CandidateFactory(request=request, rank=2, sku=appraisal_ref.sku,
                     reference_image=appraisal_ref, query_photo=first.query_photo)
    page = logged_in(appraiser).get(reverse("matching:detail", args=[request.pk])).content.decode()
    assert page.count("<figcaption>Catalogue</figcaption>") == 1
    assert page.count("<figcaption>Confirmed appraisal</figcaption>") == 1


# ----- the new-SKU outcome -------------------------------------------------------------------


def test_new_sku_opens_a_catalogue_gap_for_the_admins(appraiser, catalogue_admin, skus) -> None:
    request = _done(appraiser, query_text="Harbour tote 2025 edition")
    decision_record(request=request, user=appraiser, outcome=Decision.Outcome.NEW_SKU)
    case = BadCase.objects.get(request=request)
    assert case.status == BadCase.Status.RESOLVED and case.causes == [FailureCause.CATALOGUE_GAP]
    assert case.correct_sku is None and case.resolved_by == appraiser
    gap = CatalogueGap.objects.get(bad_case=case)
    assert gap.status == CatalogueGap.Status.OPEN and gap.reported_by == appraiser
    assert gap.note == "Harbour tote 2025 edition"  # the description, when no note is given
    gaps_page = logged_in(catalogue_admin).get(reverse("review:gaps")).content.decode()
    assert f"#{request.pk}" in gaps_page and "Harbour tote 2025 edition" in gaps_page


def test_new_sku_from_the_page_and_the_api(appraiser, skus) -> None:
    request = _done(appraiser)
    client = logged_in(appraiser)
    page = client.get(reverse("matching:detail", args=[request.pk])).content.decode()
    assert 'id="new-sku"' in page and "<kbd>n</kbd>" in page
    client.post(reverse("matching:decide", args=[request.pk]),
                {"outcome": "new_sku", "note": "a Lune in green"})
    assert CatalogueGap.objects.get().note == "a Lune in green"
    page = client.get(reverse("matching:detail", args=[request.pk])).content.decode()
    assert 'id="gap-opened"' in page and "a Lune in green" in page

    other = _done(appraiser)
    response = token_client(appraiser).post(
        reverse("api:match-decision", args=[other.pk]), {"outcome": "new_sku"},
        content_type="application/json")
    assert response.status_code == 201 and response.json()["outcome"] == "new_sku"
    assert CatalogueGap.objects.count() == 2


# ----- undo ----------------------------------------------------------------------------------


def test_undo_withdraws_the_decision_and_its_bad_case_and_keeps_the_audit(appraiser, skus):
    request = _done(appraiser)
    decision = decision_record(request=request, user=appraiser, outcome=Decision.Outcome.REJECT)
    assert BadCase.objects.filter(request=request).exists()
    decision_undo(decision=decision, user=appraiser)
    assert not Decision.objects.exists() and not BadCase.objects.exists()
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions[-2:] == ["decision.record", "decision.undo"]
    undo = AuditEntry.objects.get(action="decision.undo")
    assert undo.actor == appraiser and undo.changes["outcome"] == ["reject", None]
    # The item can be decided again.
    decision_record(request=request, user=appraiser, outcome=Decision.Outcome.OTHER_SKU,
                    sku_id=skus[0].pk)
    assert Decision.objects.get().sku == skus[0]


def test_undo_of_a_new_sku_withdraws_its_open_gap(appraiser, skus) -> None:
    request = _done(appraiser)
    decision = decision_record(request=request, user=appraiser,
                               outcome=Decision.Outcome.NEW_SKU, note="green Lune")
    decision_undo(decision=decision, user=appraiser)
    assert not CatalogueGap.objects.exists() and not BadCase.objects.exists()


def test_undo_withdraws_the_photos_it_added_to_the_gallery(appraiser, skus, settings,
                                                           django_capture_on_commit_callbacks):
    settings.GALLERY_ENRICHMENT = "all"
    request = _done(appraiser)
    decision = decision_record(request=request, user=appraiser,
                               outcome=Decision.Outcome.OTHER_SKU, sku_id=skus[1].pk)
    added = SKUImage.objects.get(source=SKUImage.Source.APPRAISAL)
    assert added.sku == skus[1]
    name = added.image.name
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        decision_undo(decision=decision, user=appraiser)
    assert not SKUImage.objects.filter(source=SKUImage.Source.APPRAISAL).exists()
    assert AuditEntry.objects.filter(action="image.remove", sku=skus[1]).exists()
    assert AuditEntry.objects.get(action="decision.undo").changes["gallery_images"] == \
        [[added.pk], []]
    # The file goes after commit (the catalogue's removal; its index sync drops the vector).
    assert default_storage.exists(name)
    for callback in callbacks:
        callback()
    assert not default_storage.exists(name)
    # Catalogue images and other requests' photos are untouched.
    assert SKUImage.objects.filter(source=SKUImage.Source.CATALOGUE).count() == 6


def test_undo_is_refused_after_the_window_and_when_switched_off(appraiser, skus, settings):
    settings.UNDO_WINDOW_S = 60
    request = _done(appraiser)
    decision = decision_record(request=request, user=appraiser, outcome=Decision.Outcome.REJECT)
    _age(decision, 61)
    with pytest.raises(DecisionError, match="60 seconds"):
        decision_undo(decision=decision, user=appraiser)
    settings.UNDO_WINDOW_S = 0
    _age(decision, 1)
    with pytest.raises(DecisionError, match="switched off"):
        decision_undo(decision=decision, user=appraiser)
    assert Decision.objects.exists() and BadCase.objects.exists()


def test_only_the_decider_may_undo(appraiser, other_appraiser, skus) -> None:
    request = _done(appraiser)
    decision = decision_record(request=request, user=appraiser, outcome=Decision.Outcome.REJECT)
    with pytest.raises(DecisionError, match="Only the appraiser"):
        decision_undo(decision=decision, user=other_appraiser)
    assert Decision.objects.exists()


@pytest.mark.parametrize("qa_action", ["tag", "resolve"])
def test_undo_is_refused_once_qa_acted_on_the_bad_case(appraiser, qa_user, skus, qa_action):
    request = _done(appraiser)
    decision = decision_record(request=request, user=appraiser, outcome=Decision.Outcome.REJECT)
    case = BadCase.objects.get()
    if qa_action == "tag":
        bad_case_tag(bad_case=case, causes=[FailureCause.LIGHTING], actor=qa_user)
    else:
        bad_case_resolve(bad_case=case, actor=qa_user, causes=[FailureCause.ANGLE],
                         correct_sku=skus[0])
    with pytest.raises(DecisionError, match="already acted"):
        decision_undo(decision=decision, user=appraiser)
    assert Decision.objects.exists() and BadCase.objects.exists()


def test_undo_of_a_new_sku_is_refused_once_the_admins_closed_the_gap(
    appraiser, catalogue_admin, skus
) -> None:
    request = _done(appraiser)
    decision = decision_record(request=request, user=appraiser, outcome=Decision.Outcome.NEW_SKU)
    catalogue_gap_close(gap=CatalogueGap.objects.get(), actor=catalogue_admin,
                        status=CatalogueGap.Status.DISMISSED)
    with pytest.raises(DecisionError, match="already acted"):
        decision_undo(decision=decision, user=appraiser)


def test_undo_on_the_page_for_the_decider_only(appraiser, other_appraiser, skus) -> None:
    request = _done(appraiser)
    decision_record(request=request, user=appraiser, outcome=Decision.Outcome.REJECT)
    detail = reverse("matching:detail", args=[request.pk])
    mine = logged_in(appraiser)
    assert 'id="undo"' in mine.get(detail).content.decode()
    theirs = logged_in(other_appraiser)
    assert 'id="undo"' not in theirs.get(detail).content.decode()
    assert theirs.post(reverse("matching:undo", args=[request.pk])).status_code == 404
    assert Decision.objects.exists()
    response = mine.post(reverse("matching:undo", args=[request.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response["HX-Redirect"] == detail
    assert not Decision.objects.exists()
    page = mine.get(detail).content.decode()
    assert "Decision undone" in page and 'id="reject-all"' in page and 'id="undo"' not in page
    assert mine.post(reverse("matching:undo", args=[request.pk])).status_code == 404


def test_undo_over_the_api(appraiser, other_appraiser, skus, settings) -> None:
    settings.UNDO_WINDOW_S = 120
    request = _done(appraiser)
    api = token_client(appraiser)
    api.post(reverse("api:match-decision", args=[request.pk]), {"outcome": "reject"},
             content_type="application/json")
    decision = api.get(reverse("api:match-detail", args=[request.pk])).json()["decision"]
    assert decision["undo_until"] is not None
    # Another appraiser's item is a 404, as for an id that does not exist (issue 13).
    refused = token_client(other_appraiser).post(
        reverse("api:match-decision-undo", args=[request.pk]))
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert Decision.objects.filter(request=request).exists()
    undone = api.post(reverse("api:match-decision-undo", args=[request.pk]))
    assert undone.status_code == 200 and undone.json()["decision"] is None
    again = api.post(reverse("api:match-decision-undo", args=[request.pk]))
    assert again.status_code == 404


# ----- one's own history ---------------------------------------------------------------------


def _plain(user, **fields) -> MatchRequest:
    return MatchRequestFactory(created_by=user, **fields)


def test_history_is_ones_own_searchable_and_filtered(appraiser, other_appraiser, skus) -> None:
    tote = _plain(appraiser, query_text="red Harbour tote")
    decided = _plain(appraiser)
    DecisionFactory(request=decided, outcome=Decision.Outcome.OTHER_SKU, sku=skus[0],
                    decided_by=appraiser)
    failed = _plain(appraiser)
    MatchRequest.objects.filter(pk=failed.pk).update(status=MatchRequest.Status.FAILED)
    _plain(other_appraiser, query_text="red Harbour tote")

    def ids(**kwargs):
        return [r.pk for r in request_history(user=appraiser, **kwargs)]

    assert ids() == [failed.pk, decided.pk, tote.pk]
    assert ids(query="harbour") == [tote.pk]
    assert ids(query=f"#{decided.pk}") == [decided.pk]
    assert ids(query=skus[0].code.lower()) == [decided.pk]
    assert ids(show="undecided") == [tote.pk]
    assert ids(show="other_sku") == [decided.pk]
    assert ids(show="failed") == [failed.pk]
    assert ids(query="x" * 5000) == []
    assert ids(show="nonsense") == ids()


def test_history_page_paginates_and_answers_htmx_with_the_table(appraiser, other_appraiser):
    green = _plain(appraiser, query_text="green Lune")
    for i in range(30):
        _plain(appraiser, query_text=f"item {i}")
    _plain(other_appraiser, query_text="not mine")
    client = logged_in(appraiser)
    first = client.get(reverse("matching:history")).content.decode()
    assert "31 items" in first and "Page 1 of 2" in first and "not mine" not in first
    assert first.count('<tr data-item="') == 25 and "item 29" in first
    second = client.get(reverse("matching:history"), {"page": 2}, HTTP_HX_REQUEST="true")
    body = second.content.decode()
    assert "<html" not in body and body.count('<tr data-item="') == 6 and "item 0" in body
    found = client.get(reverse("matching:history"), {"q": "GREEN", "show": "undecided"},
                       HTTP_HX_REQUEST="true").content.decode()
    assert found.count('<tr data-item="') == 1 and f'data-item="{green.pk}"' in found
    # A bare number is an item number or a word of the text.
    numbered = client.get(reverse("matching:history"), {"q": str(green.pk)}).content.decode()
    assert f'data-item="{green.pk}"' in numbered
    for params in ({"page": "abc"}, {"page": 999}, {"show": "<script>"}, {"q": "'\"%_\\"}):
        assert client.get(reverse("matching:history"), params).status_code == 200
    # A malformed filter falls back to its default without dropping the search.
    kept = client.get(reverse("matching:history"), {"q": "green", "show": "bogus"})
    assert kept.content.decode().count('<tr data-item="') == 1
    assert 'id="all-items"' in client.get(reverse("matching:home")).content.decode()


def test_history_over_the_api(appraiser, other_appraiser) -> None:
    for name in ("alpha", "beta", "gamma"):
        _plain(appraiser, query_text=f"bag {name}")
    _plain(other_appraiser, query_text="bag beta")
    api = token_client(appraiser)
    body = api.get(reverse("api:match-history")).json()
    assert body["count"] == 3 and body["results"][0]["query_text"] == "bag gamma"
    assert api.get(reverse("api:match-history"), {"q": "bag beta"}).json()["count"] == 1
    assert api.get(reverse("api:match-history"), {"show": "bogus"}).status_code == 400
