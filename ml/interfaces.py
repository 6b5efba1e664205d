"""The seams of the retrieval path, as ``typing.Protocol``s: what a detector, an embedder and a
vector index must offer, whatever implements them.

:class:`ml.yolo.YoloDetector`, :class:`ml.embed.Embedder` and :class:`ml.index.VectorIndex`
satisfy them (``tests/ml/test_interfaces.py`` checks it, statically through mypy and at run
time); :mod:`ml.retrieval` and the web app's gateway are typed against them, so a test double,
an exported runtime or another index library can stand in without touching either.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from ml.types import Box


@runtime_checkable
class Found(Protocol):
    """One detected item (e.g. :class:`ml.yolo.Detection`)."""

    @property
    def box(self) -> Box:
        """Pixels of the EXIF-oriented image."""
        ...

    @property
    def label(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    @property
    def mask(self) -> np.ndarray | None:
        """``[height, width]`` bool, True on the item (a segmentation model), or None."""
        ...


@runtime_checkable
class ItemDetector(Protocol):
    """Finds the item to match in each photo.

    Attributes:
        name: a version string, stored with each isolation.
    """

    name: str

    def detect_all(
        self, images: Sequence[Image.Image], *, classes: Collection[str] = ()
    ) -> Sequence[Found | None]:
        """Best detection per image among ``classes`` (any class when empty).

        Args:
            images: ``n`` RGB images, any sizes.
            classes: detector labels to accept.

        Returns:
            ``n`` entries, one per image, None where nothing qualifies.
        """
        ...


@runtime_checkable
class ImageEmbedder(Protocol):
    """Turns item crops into unit vectors whose inner product is their similarity.

    Attributes:
        name: the model version, stable for a given weights file (index versions record it).
        dim: the embedding size.
    """

    name: str
    dim: int

    def embed(self, images: Sequence[Image.Image], *, batch_size: int = 32) -> np.ndarray:
        """``n`` RGB images -> ``[n, dim]`` float32, L2-normalised rows (``[0, dim]`` for none)."""
        ...


@runtime_checkable
class SearchIndex(Protocol):
    """k-nearest-neighbour search by inner product over vectors stored under int64 ids.

    Attributes:
        dim: vector size.
    """

    dim: int

    @property
    def ntotal(self) -> int:
        """Vectors stored."""
        ...

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest stored vectors of each query.

        Args:
            queries: ``[q, dim]`` float32, L2-normalised.
            k: results per query.
            allowed_ids: ``[m]`` int64; only these ids may be returned (exactly honoured).

        Returns:
            ``(cosine [q, k] float32, ids [q, k] int64)``, best first; ``-inf`` / ``-1`` where
            fewer than ``k`` results exist.
        """
        ...

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """``ids [n]`` int64 -> ``[n]`` bool: which are stored."""
        ...


__all__ = ["Found", "ImageEmbedder", "ItemDetector", "SearchIndex"]
