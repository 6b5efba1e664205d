"""The index status pill of the catalogue's pages: ``{% index_status_pill %}``.

A tag rather than a value in each view's context: the pages are the catalogue's (and the
history import's and the audit trail's), the data is learning's, and catalog imports no
learning module.
"""

from __future__ import annotations

from django import template

from webapp.learning.index_status import IndexStatus, index_status

register = template.Library()


@register.inclusion_tag("learning/_index_status.html")
def index_status_pill() -> dict[str, IndexStatus]:
    return {"index": index_status()}
