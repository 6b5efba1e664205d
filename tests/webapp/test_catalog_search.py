"""SKU full-text search: the database's own engine (FTS5 on SQLite, tsvector on PostgreSQL),
kept in step with catalogue edits, bounded and safe against any typed text."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.urls import reverse

from tests.webapp.conftest import logged_in
from tests.webapp.test_catalog_api import token_client
from webapp.catalog.models import SKU, Brand
from webapp.catalog.search import (
    FTS5_TABLE,
    MAX_QUERY_TERMS,
    TSVECTOR_TABLE,
    search_documents_rebuild,
    search_terms,
)
from webapp.catalog.selectors import sku_browse, sku_search
from webapp.catalog.services import hierarchy_rename, sku_create, sku_set_active, sku_update

# Text that is syntax to FTS5 or to_tsquery, or that breaks naive SQL.
HOSTILE_QUERIES = [
    '"', "'", "*", "harbour*", '"harbour', "AND", "OR NOT", "NEAR(harbour tote)", "a:*",
    "harbour & | ! tote", ")(", "\\", "'); DROP TABLE catalog_sku; --", "code:HAR", "^tote",
    "-tote", "tote -", "\x00", "🙂👜", "   ", "_", "a" * 5000, " ".join(["tote"] * 500),
]


def _refused(query: str) -> bool:
    """Text the pages and the API refuse with a 400 (webapp.params.search_text): a NUL, or
    beyond SEARCH_MAX_CHARS characters or SEARCH_MAX_WORDS words."""
    text = query.strip()
    return ("\x00" in text or len(text) > settings.SEARCH_MAX_CHARS
            or len(text.split()) > settings.SEARCH_MAX_WORDS)


def _sku(code: str, name: str, *, brand: str = "Harbour", series: str = "Classic",
         category: str = "Bags", **fields) -> SKU:
    return sku_create(actor=None, code=code, name=name, category=category, brand=brand,
                      series=series, **fields)


@pytest.fixture
def shelf(db) -> dict[str, SKU]:
    return {
        "tote": _sku("HAR-TOTE-01", "Harbour Tote", colour="Red", material="Leather",
                     attributes={"description": "A roomy shopper with brass hardware"}),
        "mini": _sku("HAR-MINI-02", "Harbour Mini", colour="Black", material="Canvas"),
        "creme": _sku("VEL-ARC-03", "Crème Arco", brand="Velluto", series="Arco",
                      category="Handbags", colour="Cream"),
        "brass": _sku("KIR-SUM-04", "Summit Pack", brand="Kiruna", series="Summit",
                      category="Backpacks",
                      attributes={"description": "Harbour grey nylon, roll top"}),
    }


def _codes(query: str) -> list[str]:
    return [s.code for s in sku_search(query=query)]


def _document_count() -> int:
    table = FTS5_TABLE if connection.vendor == "sqlite" else TSVECTOR_TABLE
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        return cursor.fetchone()[0]


def test_terms_are_folded_split_deduplicated_and_capped() -> None:
    assert search_terms("Crème  BRÛLÉE crème") == ["creme", "brulee"]
    assert search_terms('DEMO-MAI-LUN-01 "x"* NEAR(a)') == ["demo", "mai", "lun", "01", "x",
                                                           "near", "a"]
    assert search_terms("snake_case") == ["snake", "case"]
    assert len(search_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_QUERY_TERMS
    assert search_terms("a" * 5000) == ["a" * 40]
    assert search_terms("!!! ''' ***") == []


def test_the_database_engine_holds_the_documents(shelf) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = %s", [FTS5_TABLE])
            assert "fts5" in cursor.fetchone()[0].lower()
        else:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s",
                           [TSVECTOR_TABLE])
            assert any("gin" in row[0].lower() for row in cursor.fetchall())
    assert _document_count() == len(shelf)


def test_every_word_must_match_as_a_prefix(shelf) -> None:
    assert _codes("harbour tote") == ["HAR-TOTE-01"]
    assert set(_codes("harb")) == {"HAR-TOTE-01", "HAR-MINI-02", "KIR-SUM-04"}
    assert _codes("har tote 01") == ["HAR-TOTE-01"]
    assert _codes("HAR-MINI") == ["HAR-MINI-02"]
    assert _codes("red leather") == ["HAR-TOTE-01"]  # colour and material
    assert _codes("brass hardware") == ["HAR-TOTE-01"]  # the description
    assert _codes("backpacks") == ["KIR-SUM-04"]  # the category
    assert _codes("harbour purple") == []


def test_accents_and_case_do_not_matter(shelf) -> None:
    assert _codes("creme") == ["VEL-ARC-03"]
    assert _codes("CRÈME arco") == ["VEL-ARC-03"]


def test_name_matches_rank_above_description_matches(shelf) -> None:
    # "harbour" is the brand and in two names, but only in the backpack's description.
    ranked = _codes("harbour")
    assert set(ranked) == {"HAR-TOTE-01", "HAR-MINI-02", "KIR-SUM-04"}
    assert ranked[-1] == "KIR-SUM-04"


def test_inactive_skus_are_not_offered_but_the_curation_list_finds_them(shelf) -> None:
    sku_set_active(sku=shelf["mini"], actor=None, active=False)
    assert _codes("harbour mini") == []
    assert [s.code for s in sku_browse(query="harbour mini", status="all")] == ["HAR-MINI-02"]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_any_typed_text_is_searched_without_an_error(shelf, query) -> None:
    found = _codes(query)
    assert isinstance(found, list)
    assert list(sku_browse(query=query, status="all")) is not None


def test_syntax_characters_are_just_separators(shelf) -> None:
    assert _codes('"harbour" AND tote*') == []  # AND is one more word to match, not an operator
    assert _codes('"harbour" tote*') == ["HAR-TOTE-01"]
    assert _codes("NEAR(harbour tote)") == []


def test_documents_follow_sku_edits(shelf) -> None:
    sku_update(sku=shelf["tote"], actor=None, name="Quayside Tote",
               attributes={"description": "woven raffia"})
    assert _codes("quayside") == ["HAR-TOTE-01"]
    assert _codes("raffia") == ["HAR-TOTE-01"]
    assert _codes("brass") == []
    sku_update(sku=shelf["mini"], actor=None, series="Voyage")
    assert _codes("voyage") == ["HAR-MINI-02"]
    new = _sku("NEW-05", "Lantern Clutch", brand="Lumen")
    assert _codes("lantern") == [new.code]


def test_documents_follow_hierarchy_renames(shelf) -> None:
    hierarchy_rename(node=Brand.objects.get(name="Harbour"), actor=None, name="Havn")
    assert set(_codes("havn")) == {"HAR-TOTE-01", "HAR-MINI-02"}
    hierarchy_rename(node=Brand.objects.get(name="Kiruna"), actor=None, name="Fjell")
    assert _codes("fjell") == ["KIR-SUM-04"]
    assert _codes("kiruna") == []
    category = shelf["creme"].series.brand.category
    hierarchy_rename(node=category, actor=None, name="Evening bags")
    assert _codes("evening") == ["VEL-ARC-03"]


def test_a_deleted_sku_loses_its_document(shelf) -> None:
    count = _document_count()
    SKU.objects.filter(pk=shelf["brass"].pk).get().delete()
    assert _document_count() == count - 1


def test_the_migration_backfill_rebuilds_every_document(shelf) -> None:
    table = FTS5_TABLE if connection.vendor == "sqlite" else TSVECTOR_TABLE
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}")
    assert _codes("harbour") == []
    historical = MigrationLoader(connection).project_state(
        ("catalog", "0004_sku_search")).apps.get_model("catalog", "SKU")
    assert search_documents_rebuild(sku_model=historical) == len(shelf)
    assert _codes("harbour tote") == ["HAR-TOTE-01"]


def test_pick_another_sku_search_pages_rank_and_survive_hostile_text(shelf, appraiser, qa_user):
    appraiser_client, qa_client = logged_in(appraiser), logged_in(qa_user)
    page = appraiser_client.get(reverse("matching:sku_lookup"), {"q": "harbour tote"})
    assert page.status_code == 200 and "HAR-TOTE-01" in page.content.decode()
    assert "HAR-MINI-02" not in page.content.decode()
    for query in HOSTILE_QUERIES:
        expected = 400 if _refused(query) else 200  # a clear error, never a 500
        assert appraiser_client.get(reverse("matching:sku_lookup"), {"q": query}).status_code \
            == expected, query
        assert qa_client.get(reverse("review:sku_lookup"), {"q": query}).status_code \
            == expected, query


def test_api_catalogue_search_ranks_and_bounds_the_query(shelf, qa_user) -> None:
    api = token_client(qa_user)
    body = api.get(reverse("api:sku-list"), {"q": "harbour"}).json()
    assert body["count"] == 3 and body["results"][-1]["code"] == "KIR-SUM-04"
    assert api.get(reverse("api:sku-list"), {"q": "creme"}).json()["count"] == 1
    for query in HOSTILE_QUERIES:
        response = api.get(reverse("api:sku-list"), {"q": query})
        if _refused(query):
            assert response.status_code == 400  # too long or a NUL: a clear error
            assert response.json()["error"]["code"]
        else:
            assert response.status_code == 200, (query, response.content)
