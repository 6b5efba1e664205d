"""SKU text search with the database's own full-text engine.

- SQLite (the embedded default): an FTS5 table `catalog_sku_fts` (rowid = SKU id), ranked by
  bm25 with column weights.
- PostgreSQL: a table `catalog_sku_search` (sku_id, weighted tsvector) with a GIN index,
  ranked by ts_rank.
- Any other database: case-insensitive substring matching (no ranking).

Both engines see the same words: this module folds case and accents and splits text into
letters-and-digits tokens in Python, for the documents and for the query alike, so "Crème",
"creme" and "CREME" meet, a code like "DEMO-MAI-LUN-01" is found by "lun 01", and nothing a
user types can reach the engine's query syntax. Every query word must match (as a prefix, so
the search works while one types); the query is capped in characters and words.

Documents are written by `search_documents_refresh`, called by the catalogue's receivers
(webapp.catalog.receivers) on every save and delete of a SKU, series, brand or category, inside
the writer's transaction. Writes that bypass `save()` (QuerySet.update, bulk_create) of the
searched fields must call it themselves; `manage.py rebuild_sku_search` rebuilds everything.
Signals rather than database triggers: a trigger on catalog_sku that reads catalog_brand makes
SQLite refuse the table rebuilds Django's migrations do on that backend.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, Q, QuerySet
from django.db.models.expressions import RawSQL

# Bounds on what a user may search for: the rest of the text is ignored.
MAX_QUERY_CHARS = 200
MAX_QUERY_TERMS = 12
MAX_TERM_CHARS = 40
# Bounds on one document's words (descriptions can be long).
MAX_DOCUMENT_TERMS = 400
MAX_DOCUMENT_TERM_CHARS = 64

FTS5_TABLE = "catalog_sku_fts"
TSVECTOR_TABLE = "catalog_sku_search"
# PostgreSQL's 'simple' configuration neither stems nor drops stop words: brand and product
# names are not English, and the tokens are already folded here.
TS_CONFIG = "simple"
# Relative weight of the four document parts, strongest first (FTS5 bm25 column weights;
# PostgreSQL uses its A-D weights in the same order).
FTS5_WEIGHTS = (10.0, 4.0, 2.0, 1.0)

_TOKEN = re.compile(r"[^\W_]+")
# The fields a document is built from (the series, brand and category names through joins).
DOCUMENT_FIELDS = ("code", "name", "colour", "material", "size", "attributes")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def tokens(text: str, *, limit: int = MAX_DOCUMENT_TERMS,
           max_chars: int = MAX_DOCUMENT_TERM_CHARS) -> list[str]:
    """Folded letters-and-digits words of `text`, at most `limit`, each cut to `max_chars`."""
    return [t[:max_chars] for t in _TOKEN.findall(_fold(text))[:limit]]


def search_terms(query: str) -> list[str]:
    """The distinct words of a user's query, within the caps, in the order typed."""
    seen: dict[str, None] = {}
    for term in tokens(query[:MAX_QUERY_CHARS], limit=MAX_QUERY_TERMS * 4,
                       max_chars=MAX_TERM_CHARS):
        seen.setdefault(term, None)
    return list(seen)[:MAX_QUERY_TERMS]


@dataclass(frozen=True)
class SearchDocument:
    """One SKU's searchable text in four parts, strongest first."""

    sku_id: int
    identity: str  # code and name
    hierarchy: str  # brand and series
    facets: str  # category, colour, material, size
    details: str  # attribute values (descriptions, ...)

    @property
    def parts(self) -> tuple[str, str, str, str]:
        return (self.identity, self.hierarchy, self.facets, self.details)


def _words(*texts: object) -> str:
    return " ".join(tokens(" ".join(str(t) for t in texts if t)))


def documents_for(sku_model: type[Model], ids: Iterable[int] | None = None
                  ) -> list[SearchDocument]:
    """Documents of the given SKUs (all when `ids` is None). `sku_model` may be a migration's
    historical model, so this reads plain values only."""
    rows = sku_model._default_manager.all()  # type: ignore[attr-defined]
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    values = rows.values_list(
        "pk", *DOCUMENT_FIELDS, "series__name", "series__brand__name",
        "series__brand__category__name",
    )
    documents = []
    for pk, code, name, colour, material, size, attributes, series, brand, category in values:
        attribute_values = attributes.values() if isinstance(attributes, dict) else []
        documents.append(SearchDocument(
            sku_id=pk,
            identity=_words(code, name),
            hierarchy=_words(brand, series),
            facets=_words(category, colour, material, size),
            details=_words(*attribute_values),
        ))
    return documents


# ----- the engines ---------------------------------------------------------------------------


class _Engine:
    """How one database stores and searches the documents."""

    def install(self, connection: BaseDatabaseWrapper) -> None:
        """Create the table (idempotent)."""

    def uninstall(self, connection: BaseDatabaseWrapper) -> None:
        """Drop the table."""

    def write(self, connection: BaseDatabaseWrapper, documents: Sequence[SearchDocument],
              removed: Sequence[int]) -> None:
        """Replace the documents of these SKUs; drop those of `removed`."""

    def clear(self, connection: BaseDatabaseWrapper) -> None:
        """Drop every document."""

    def matching_ids(self, terms: Sequence[str]) -> RawSQL | None:
        """A subquery of the ids of SKUs that match every term; None: use substring matching."""
        return None

    def rank(self, terms: Sequence[str]) -> RawSQL | None:
        """Relevance of the row's SKU (higher is better), for the outermost query only."""
        return None


class _Fts5(_Engine):
    def install(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS5_TABLE} USING fts5("
                "identity, hierarchy, facets, details, tokenize = 'unicode61')"
            )

    def uninstall(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {FTS5_TABLE}")

    def write(self, connection: BaseDatabaseWrapper, documents: Sequence[SearchDocument],
              removed: Sequence[int]) -> None:
        with connection.cursor() as cursor:
            stale = [(pk,) for pk in [*removed, *(d.sku_id for d in documents)]]
            cursor.executemany(f"DELETE FROM {FTS5_TABLE} WHERE rowid = %s", stale)
            cursor.executemany(
                f"INSERT INTO {FTS5_TABLE} (rowid, identity, hierarchy, facets, details) "
                "VALUES (%s, %s, %s, %s, %s)",
                [(d.sku_id, *d.parts) for d in documents],
            )

    def clear(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {FTS5_TABLE}")

    @staticmethod
    def _expression(terms: Sequence[str]) -> str:
        # Each term is a quoted prefix ("term"*); terms hold letters and digits only.
        return " AND ".join(f'"{term}"*' for term in terms)

    def matching_ids(self, terms: Sequence[str]) -> RawSQL:
        return RawSQL(f"SELECT rowid FROM {FTS5_TABLE} WHERE {FTS5_TABLE} MATCH %s",
                      (self._expression(terms),))

    def rank(self, terms: Sequence[str]) -> RawSQL:
        weights = ", ".join(str(w) for w in FTS5_WEIGHTS)
        return RawSQL(
            f"(SELECT -bm25({FTS5_TABLE}, {weights}) FROM {FTS5_TABLE} "
            f'WHERE {FTS5_TABLE} MATCH %s AND rowid = "catalog_sku"."id")',
            (self._expression(terms),),
        )


class _TsVector(_Engine):
    def install(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {TSVECTOR_TABLE} ("
                "sku_id bigint PRIMARY KEY, document tsvector NOT NULL)"
            )
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {TSVECTOR_TABLE}_document_gin "
                f"ON {TSVECTOR_TABLE} USING gin (document)"
            )

    def uninstall(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TSVECTOR_TABLE}")

    def write(self, connection: BaseDatabaseWrapper, documents: Sequence[SearchDocument],
              removed: Sequence[int]) -> None:
        weighted = " || ".join(
            f"setweight(to_tsvector('{TS_CONFIG}', %s), '{weight}')" for weight in "ABCD"
        )
        with connection.cursor() as cursor:
            if removed:
                cursor.execute(f"DELETE FROM {TSVECTOR_TABLE} WHERE sku_id = ANY(%s)",
                               (list(removed),))
            cursor.executemany(
                f"INSERT INTO {TSVECTOR_TABLE} (sku_id, document) VALUES (%s, {weighted}) "
                "ON CONFLICT (sku_id) DO UPDATE SET document = EXCLUDED.document",
                [(d.sku_id, *d.parts) for d in documents],
            )

    def clear(self, connection: BaseDatabaseWrapper) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {TSVECTOR_TABLE}")

    @staticmethod
    def _expression(terms: Sequence[str]) -> str:
        # Quoted prefix lexemes joined by AND; terms hold letters and digits only.
        return " & ".join(f"'{term}':*" for term in terms)

    def matching_ids(self, terms: Sequence[str]) -> RawSQL:
        return RawSQL(
            f"SELECT sku_id FROM {TSVECTOR_TABLE} "
            f"WHERE document @@ to_tsquery('{TS_CONFIG}', %s)",
            (self._expression(terms),),
        )

    def rank(self, terms: Sequence[str]) -> RawSQL:
        return RawSQL(
            f"(SELECT ts_rank(document, to_tsquery('{TS_CONFIG}', %s)) FROM {TSVECTOR_TABLE} "
            f'WHERE sku_id = "catalog_sku"."id")',
            (self._expression(terms),),
        )


def engine_for(connection: BaseDatabaseWrapper) -> _Engine:
    if connection.vendor == "sqlite":
        return _Fts5()
    if connection.vendor == "postgresql":
        return _TsVector()
    return _Engine()


# ----- writes --------------------------------------------------------------------------------


def search_documents_refresh(*, sku_ids: Iterable[int], using: str = "default",
                             sku_model: type[Model] | None = None) -> int:
    """Rewrite the documents of these SKUs (a deleted SKU loses its document)."""
    from webapp.catalog.models import SKU

    ids = sorted(set(sku_ids))
    if not ids:
        return 0
    connection = connections[using]
    documents = documents_for(sku_model or SKU, ids)
    found = {d.sku_id for d in documents}
    engine_for(connection).write(connection, documents, [pk for pk in ids if pk not in found])
    return len(documents)


def search_documents_rebuild(*, using: str = "default",
                             sku_model: type[Model] | None = None) -> int:
    """Every document from scratch (the migration's backfill and `rebuild_sku_search`)."""
    from webapp.catalog.models import SKU

    connection = connections[using]
    engine = engine_for(connection)
    engine.install(connection)
    engine.clear(connection)
    documents = documents_for(sku_model or SKU)
    for start in range(0, len(documents), 1000):
        engine.write(connection, documents[start:start + 1000], [])
    return len(documents)


# ----- reads ---------------------------------------------------------------------------------


def _substring_filter(terms: Sequence[str]) -> Q:
    match = Q()
    for term in terms:
        match &= (
            Q(code__icontains=term) | Q(name__icontains=term) | Q(colour__icontains=term)
            | Q(material__icontains=term) | Q(series__name__icontains=term)
            | Q(series__brand__name__icontains=term)
            | Q(series__brand__category__name__icontains=term)
        )
    return match


def sku_text_filter(skus: QuerySet, query: str, *, using: str = "default") -> QuerySet:
    """`skus` narrowed to those matching every word of `query` (none when it has no words).

    Safe inside subqueries: it adds no reference to the outer table."""
    terms = search_terms(query)
    if not terms:
        return skus.none()
    ids = engine_for(connections[using]).matching_ids(terms)
    return skus.filter(pk__in=ids) if ids is not None else skus.filter(_substring_filter(terms))


def sku_text_rank(skus: QuerySet, query: str, *, using: str = "default") -> QuerySet:
    """`sku_text_filter`, best matches first (then by code). Use on the outermost query."""
    terms = search_terms(query)
    matched = sku_text_filter(skus, query, using=using)
    rank = engine_for(connections[using]).rank(terms) if terms else None
    if rank is None:
        return matched.order_by("code")
    return matched.annotate(search_rank=rank).order_by("-search_rank", "code")
