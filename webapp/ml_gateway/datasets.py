"""The Grocery Store dataset's split files, for the history import and the loop simulation."""

from __future__ import annotations

from pathlib import Path

from ml.datasets import read_grocery_split


def grocery_split(root: str | Path, split: str) -> list[tuple[Path, int, int]]:
    """``<root>/<split>.txt`` as (absolute image path, product id, coarse class id) rows."""
    return read_grocery_split(root, split)
