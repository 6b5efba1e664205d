"""Fixtures for the learning-loop tests: small checkpoints (a good one and a useless one), and a
six-SKU catalogue indexed without detection or GrabCut, so each test costs seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ml.model import build_model, save_checkpoint
from webapp.catalog.bulk import catalogue_import
from webapp.catalog.importing import read_catalogue_csv
from webapp.catalog.models import SKU
from webapp.learning import gate
from webapp.learning.models import IndexVersion
from webapp.learning.services import index_publish


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Session-wide files, so the gateway's per-process model cache is reused across tests."""
    folder = tmp_path_factory.mktemp("checkpoints")
    good = folder / "pretrained128.pt"
    # ImageNet EfficientNet-Lite0 at a small input size: cheap, and good at the demo bags.
    save_checkpoint(good, build_model("efficientnet_lite0", image_size=128))
    # Maps every image to the same vector: the worst possible model (ties everywhere).
    useless = folder / "constant.pt"
    model = build_model("efficientnet_lite0", pretrained=False, embedding_dim=8, image_size=64)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(1.0)
    save_checkpoint(useless, model)
    return {"good": str(good.resolve()), "useless": str(useless.resolve())}


@pytest.fixture
def fast_isolation(settings, monkeypatch) -> Iterator[None]:
    """Full-frame items: the detector and GrabCut are tested elsewhere."""
    monkeypatch.setattr("webapp.ml_gateway.runtime.detector", lambda: None)  # isolator() calls it
    settings.SEGMENTATION = "none"
    gate._QUERY_CACHE.clear()
    yield
    gate._QUERY_CACHE.clear()


@pytest.fixture
def loop_dirs(settings, tmp_path: Path) -> Path:
    settings.MODELS_DIR = tmp_path / "models"
    settings.TRAINING_DIR = tmp_path / "training"
    return tmp_path


@pytest.fixture
def small_catalogue(
    fast_isolation, loop_dirs, settings, demo_folder: Path, checkpoints: dict[str, str], db
) -> IndexVersion:
    """Six demo SKUs (two reference images each), indexed with the small pretrained model."""
    settings.EMBEDDING_MODEL = checkpoints["good"]  # what an on-commit index sync would load
    rows = list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:6]
    assert not catalogue_import(rows=rows, image_root=demo_folder).errors
    assert SKU.objects.count() == 6
    return index_publish(model_ref=checkpoints["good"])
