"""The index artefact store (webapp.learning.artifacts): upload with checksums, verified
download into a machine's own index directory, through nothing but Django's storage API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import storages

from ml.index import VectorIndex
from tests.webapp.factories import IndexVersionFactory
from webapp import ml_gateway
from webapp.learning import artifacts
from webapp.learning.models import IndexVersion


@pytest.fixture
def memory_store(settings):
    """An object store stand-in with no path on disk (as S3 has none)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    yield storages["default"]


def _published(settings, name: str = "idx-test-1", n: int = 40, dim: int = 8) -> IndexVersion:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.build(np.arange(100, 100 + n, dtype=np.int64), vectors, kind="flat")
    index.save(Path(settings.INDEX_DIR) / name, meta={"count": n})
    artifacts.index_artifact_upload(name=name)
    return IndexVersionFactory(
        name=name, model_version="m", model_ref="efficientnet_lite0", is_active=True,
        status=IndexVersion.Status.READY, vector_count=n,
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_writes_files_and_a_manifest_with_checksums(db, settings, memory_store) -> None:
    version = _published(settings)
    manifest = artifacts.index_manifest(version.name)
    local = Path(settings.INDEX_DIR) / version.name
    assert manifest is not None and manifest["version"] == version.name
    assert set(manifest["files"]) == {"index.faiss", "meta.json"}
    for file_name, entry in manifest["files"].items():
        assert entry["sha256"] == _digest(local / file_name)
        assert entry["size"] == (local / file_name).stat().st_size
        with memory_store.open(f"artifacts/index/{version.name}/{file_name}", "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == entry["sha256"]


def test_a_fresh_machine_downloads_verifies_and_serves(db, settings, memory_store, tmp_path):
    version = _published(settings)
    original = Path(settings.INDEX_DIR) / version.name
    settings.INDEX_DIR = tmp_path / "other-machine"
    ml_gateway.active_index.forget()
    name, index, _ = ml_gateway.active_index.get()
    assert name == version.name and index.ntotal == 40
    local = settings.INDEX_DIR / version.name
    assert (local / artifacts.VERIFIED).is_file()
    for file_name in ("index.faiss", "meta.json"):
        assert _digest(local / file_name) == _digest(original / file_name)
    # Present and verified now: a second call downloads nothing (the store may even be gone).
    memory_store.delete(f"artifacts/index/{version.name}/index.faiss")
    assert artifacts.index_local_ensure(name=version.name) == local


def test_a_corrupt_download_is_refused_and_leaves_nothing(db, settings, memory_store, tmp_path):
    version = _published(settings)
    key = f"artifacts/index/{version.name}/index.faiss"
    with memory_store.open(key, "rb") as handle:
        data = bytearray(handle.read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    memory_store.delete(key)
    memory_store.save(key, ContentFile(bytes(data)))
    settings.INDEX_DIR = tmp_path / "other-machine"
    with pytest.raises(artifacts.ArtifactError, match="sha256"):
        artifacts.index_local_ensure(name=version.name)
    assert not (settings.INDEX_DIR / version.name).exists()
    assert not any(settings.INDEX_DIR.iterdir())  # no temporary directory left either
    ml_gateway.active_index.forget()
    with pytest.raises(ml_gateway.IndexUnavailable, match="sha256"):
        ml_gateway.active_index.get()


def test_a_version_neither_here_nor_in_the_store_is_unavailable(db, settings, memory_store):
    IndexVersionFactory(name="idx-lost", model_version="m", is_active=True,
                        status=IndexVersion.Status.READY, vector_count=3)
    with pytest.raises(ml_gateway.IndexUnavailable, match="neither"):
        ml_gateway.active_index.get()


def test_a_checkpoint_travels_with_its_index(db, settings, memory_store, tmp_path) -> None:
    checkpoint = tmp_path / "models" / "abc123def456" / "run7.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not really a torch file, only bytes to carry")
    version = _published(settings, name="idx-test-ckpt")
    manifest = artifacts.index_artifact_upload(name=version.name, model_ref=str(checkpoint))
    assert manifest["model"]["key"] == "artifacts/models/abc123def456/run7.pt"
    stored = json.loads(memory_store.open(f"artifacts/index/{version.name}/manifest.json").read())
    assert stored["model"]["sha256"] == _digest(checkpoint)
    original = checkpoint.read_bytes()
    checkpoint.unlink()
    settings.INDEX_DIR = tmp_path / "other-machine"
    artifacts.index_local_ensure(name=version.name)
    assert checkpoint.read_bytes() == original


def test_publish_uploads_before_the_version_goes_live(catalogue) -> None:
    manifest = artifacts.index_manifest(catalogue.name)
    assert manifest is not None
    assert manifest["files"]["meta.json"]["size"] > 0


@pytest.mark.gpu
def test_a_worker_searches_the_active_index_on_the_gpu(db, settings) -> None:
    """With faiss-gpu and a CUDA device the loaded replica lives on the GPU (exact filters
    through ml.index.gpu); elsewhere this is skipped with the reason."""
    version = _published(settings)
    name, index, _ = ml_gateway.active_index.get()
    assert name == version.name and index.device == "gpu"
    allowed = np.arange(100, 110, dtype=np.int64)
    _, found = index.search(index.reconstruct(allowed[:3]), 5, allowed_ids=allowed)
    assert np.isin(found[found >= 0], allowed).all()


def test_retention_removes_a_pruned_version_from_the_store_too(db, settings, memory_store):
    version = _published(settings, name="idx-old")
    assert artifacts.index_manifest(version.name) is not None
    artifacts.index_artifact_delete(name=version.name)
    assert artifacts.index_manifest(version.name) is None
    assert not memory_store.exists(f"artifacts/index/{version.name}/index.faiss")
    artifacts.index_artifact_delete(name=version.name)  # twice: nothing left to do
