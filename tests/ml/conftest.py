"""Fixtures for tests/ml: plain pytest, no Django, no database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

# Offline assets live next to the repository (../shared), never inside it.
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
GROCERY = SHARED / "data" / "grocery"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def grocery_root() -> Path:
    if not (GROCERY / "classes.csv").is_file():
        pytest.skip(f"Grocery Store Dataset not found at {GROCERY} (offline asset, not in repo)")
    return GROCERY


@pytest.fixture(scope="session")
def lite0():
    """Pretrained EfficientNet-Lite0 without a head, in eval mode (built once: ~1 s)."""
    from ml.model import build_model

    return build_model("efficientnet_lite0").eval()


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``[n, dim]`` random float32 rows of unit length."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def make_unit_vectors():
    return unit_vectors
