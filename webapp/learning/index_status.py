"""How fresh the search index is, for the catalogue pages, the API and the sweeper (a selector).

The catalogue's pages show it through the `index_status_pill` template tag
(webapp.learning.templatetags.learning_index), so that catalog imports no learning module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from webapp.catalog.models import SKUImage
from webapp.learning.selectors import active_index_version
from webapp.learning.services import index_is_consistent


@dataclass(frozen=True)
class IndexStatus:
    name: str | None
    model_version: str
    vectors: int
    # Reference images of active SKUs: what the index should hold once all are embedded.
    expected: int
    # Of those, embedded with the index's model (index_is_consistent compares against these).
    embedded: int
    updated_at: datetime | None
    consistent: bool

    @property
    def waiting(self) -> int:
        """Images not embedded yet: the next sync will embed and add them."""
        return self.expected - self.embedded

    @property
    def in_sync(self) -> bool:
        return self.name is not None and self.consistent and self.waiting == 0


def index_status() -> IndexStatus:
    expected = SKUImage.objects.filter(sku__is_active=True).count()
    version = active_index_version()
    if version is None:
        return IndexStatus(None, "", 0, expected, 0, None, False)
    embedded = SKUImage.objects.filter(
        sku__is_active=True, embedding__isnull=False, embedding_model=version.model_version
    ).count()
    return IndexStatus(
        name=version.name,
        model_version=version.model_version,
        vectors=version.vector_count,
        expected=expected,
        embedded=embedded,
        updated_at=version.finished_at or version.created_at,
        consistent=index_is_consistent(version),
    )
