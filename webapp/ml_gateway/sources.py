"""What the gateway reads from the database, as plain data, through readers it is handed.

The gateway imports no webapp app: at start-up (``webapp.learning.apps``) the selectors that
read the rows are installed here as one :class:`Sources`. The gateway caches the model and
index per process and asks these readers only for ids, names and bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass


class IndexUnavailable(RuntimeError):
    """No index has been built yet, or its files are missing."""


@dataclass(frozen=True)
class IndexFiles:
    """An index version as the gateway loads it (the IndexVersion row, as plain data)."""

    name: str  # the version directory under SKULENS_INDEX_DIR
    vector_count: int  # what the database recorded: a loaded index must hold as many
    model_ref: str  # the embedder that built it; "" for the default model
    # The embeddings it holds: the SKUImage.embedding_model value of its vectors' images.
    model_version: str


@dataclass(frozen=True)
class SkuDescription:
    """A candidate SKU's text and attributes, as the evidence stage compares them."""

    sku_id: int
    name: str
    category: str
    brand: str
    series: str
    description: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class ReferenceImage:
    """A reference image whose evidence the gateway computes."""

    id: int
    checksum: str  # "" when unknown: the evidence is then not cached
    primary: bool  # a catalogue image (its text is read), not a confirmed photo
    read: Callable[[], bytes]  # the encoded image file; raises OSError when it is unreadable


@dataclass(frozen=True)
class FittedFusion:
    """The evidence fusion fitted on decisions (a FusionWeights row, as plain data)."""

    weights: dict[str, float]
    intercept: float
    threshold: float
    source: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Sources:
    """The readers the gateway is handed (webapp.learning.apps installs them)."""

    # The active index version, or None before the first publish.
    active_index: Callable[[], IndexFiles | None]
    # Ready versions of the same model older than the named one, newest first (a fallback
    # when the active version's files are unusable).
    earlier_indexes: Callable[[str], Sequence[IndexFiles]]
    # Makes this machine's copy of a version (and its checkpoint) complete; raises
    # IndexUnavailable when the artefact store cannot supply it.
    index_local_ensure: Callable[[str], None]
    # Reference id -> SKU id, for references of active SKUs only.
    sku_of: Callable[[Collection[int]], dict[int, int]]
    # The candidates' text and attributes.
    sku_descriptions: Callable[[Sequence[int]], dict[int, SkuDescription]]
    # Each SKU's indexable reference ids, catalogue images first.
    sku_references: Callable[[Sequence[int]], dict[int, list[int]]]
    # The reference images with these ids (missing ids are left out).
    reference_images: Callable[[Sequence[int]], Iterable[ReferenceImage]]
    # The newest fusion fitted on decisions, or None.
    fitted_fusion: Callable[[], FittedFusion | None]


_installed: Sources | None = None


def sources_install(sources: Sources) -> None:
    global _installed
    _installed = sources


def sources_installed() -> Sources:
    if _installed is None:
        raise RuntimeError("webapp.ml_gateway has no readers: django.setup() installs them "
                           "(webapp.learning.apps.LearningConfig.ready)")
    return _installed
