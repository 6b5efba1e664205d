"""Index replicas without a shared disk: version directories travel through the artefact store.

Publishing writes the version directory locally (``ml_gateway.index_path``), then uploads its
files with their SHA-256 through Django's storage API (``storages["default"]``, the media
storage, under ``artifacts/``), the manifest last, so a manifest in the store means a complete
upload. A worker that lacks a version locally downloads it into a temporary sibling directory,
checks every file's size and checksum against the manifest, and renames it into place: a
version directory in the cache is always complete and verified. Trained checkpoints (an index's
``model_ref`` is then a file path) travel the same way, to the same path, so every machine
must use the same ``SKULENS_MODELS_DIR`` path.

Only ``open``, ``save``, ``exists`` and ``delete`` of the storage are used (never ``path``), so
an S3-compatible backend (django-storages) can be dropped in with ``SKULENS_MEDIA_STORAGE``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

logger = logging.getLogger(__name__)

PREFIX = "artifacts"
MANIFEST = "manifest.json"
# Marks a local version directory as complete and verified (written last, by this module).
VERIFIED = ".verified"
CHUNK = 1 << 20


class ArtifactError(RuntimeError):
    """An artefact is missing from the store or does not match its checksum."""


@dataclass(frozen=True)
class FileEntry:
    key: str  # storage name
    sha256: str
    size: int


def artifact_storage() -> Storage:
    return storages["default"]


def _index_key(name: str, file_name: str) -> str:
    return f"{PREFIX}/index/{name}/{file_name}"


def _model_key(model_path: Path) -> str:
    # Registry checkpoints are <MODELS_DIR>/<sha12>/<stem>.pt: keep the last two parts.
    return f"{PREFIX}/models/{model_path.parent.name}/{model_path.name}"


def _sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _upload(storage: Storage, key: str, path: Path) -> FileEntry:
    sha, size = _sha256_file(path)
    if storage.exists(key):  # same name: a retried publish; replace what may be partial
        storage.delete(key)
    with path.open("rb") as handle:
        saved = storage.save(key, File(handle, name=path.name))
    if saved != key:  # the backend renamed it (a concurrent upload): the manifest must agree
        raise ArtifactError(f"storage saved {key} as {saved}")
    return FileEntry(key, sha, size)


def _checkpoint_path(model_ref: str) -> Path | None:
    """The file of a trained model's checkpoint, or None for a backbone name."""
    if not model_ref or not (os.sep in model_ref or model_ref.endswith(".pt")):
        return None
    return Path(model_ref)


def index_artifact_upload(*, name: str, model_ref: str = "") -> dict[str, Any]:
    """Upload version ``name``'s local files (and its checkpoint, if ``model_ref`` is one) to
    the store; the manifest goes last. Returns the manifest."""
    storage = artifact_storage()
    local = Path(settings.INDEX_DIR) / name
    # Every file of the version, sub-folders included (the re-ranker's reference evidence).
    files = sorted(
        p for p in local.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(local).parts)
    )
    if not files:
        raise ArtifactError(f"{local} holds no index files")
    manifest: dict[str, Any] = {"version": name, "files": {}, "model": None}
    for path in files:
        relative = path.relative_to(local).as_posix()
        entry = _upload(storage, _index_key(name, relative), path)
        manifest["files"][relative] = {"sha256": entry.sha256, "size": entry.size}
    checkpoint = _checkpoint_path(model_ref)
    if checkpoint is not None and checkpoint.is_file():
        key = _model_key(checkpoint)
        sha, size = _sha256_file(checkpoint)
        existing = _stored_sha(storage, key)
        if existing != sha:
            _upload(storage, key, checkpoint)
            _write_json(storage, key + ".sha256", {"sha256": sha, "size": size})
        manifest["model"] = {"ref": model_ref, "key": key, "sha256": sha, "size": size}
    _write_json(storage, _index_key(name, MANIFEST), manifest)
    logger.info("uploaded index %s to the artefact store (%d files)", name, len(files))
    return manifest


def _write_json(storage: Storage, key: str, data: dict[str, Any]) -> None:
    if storage.exists(key):
        storage.delete(key)
    storage.save(key, ContentFile(json.dumps(data, indent=2, sort_keys=True).encode()))


def _read_json(storage: Storage, key: str) -> dict[str, Any] | None:
    if not storage.exists(key):
        return None
    with storage.open(key, "rb") as handle:
        data: dict[str, Any] = json.loads(handle.read().decode())
    return data


def _stored_sha(storage: Storage, key: str) -> str | None:
    stamp = _read_json(storage, key + ".sha256")
    return stamp["sha256"] if stamp and storage.exists(key) else None


def index_manifest(name: str) -> dict[str, Any] | None:
    """The store's manifest of version ``name``, or None if it was never (fully) uploaded."""
    return _read_json(artifact_storage(), _index_key(name, MANIFEST))


def _download(storage: Storage, key: str, target: Path, *, sha256: str, size: int) -> None:
    digest, written = hashlib.sha256(), 0
    with storage.open(key, "rb") as source, target.open("wb") as out:
        handle: IO[bytes] = source
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            written += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if written != size or digest.hexdigest() != sha256:
        raise ArtifactError(
            f"{key}: downloaded {written} bytes with sha256 {digest.hexdigest()[:12]}, "
            f"the manifest says {size} bytes, {sha256[:12]}"
        )


def index_local_ensure(*, name: str) -> Path:
    """Make version ``name`` present and verified in this machine's index directory (and its
    checkpoint at its path), downloading what is missing. Returns the version directory.

    A directory without the verified marker was written by a publish on this machine (saves
    are atomic renames, and ``index_artifact_upload`` hashed exactly those files): it is used
    as it is. Raises ArtifactError when the version is neither here nor in the store, or when a
    download does not match its checksum (nothing is left behind then).
    """
    local = Path(settings.INDEX_DIR) / name
    storage = artifact_storage()
    if (local / VERIFIED).is_file():
        manifest: dict[str, Any] = json.loads((local / VERIFIED).read_text())
    elif local.is_dir():
        return local
    else:
        stored = index_manifest(name)
        if stored is None:
            raise ArtifactError(f"index {name} is neither in {local.parent} nor in the store")
        manifest = stored
        _download_version(storage, manifest, local)
    model = manifest.get("model")
    checkpoint = _checkpoint_path(model["ref"]) if model else None
    if model and checkpoint is not None and not checkpoint.is_file():
        _download_checkpoint(storage, model, checkpoint)
    return local


def _download_version(storage: Storage, manifest: dict[str, Any], local: Path) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{local.name}.download-", dir=local.parent))
    try:
        for file_name, entry in manifest["files"].items():
            if Path(file_name).is_absolute() or ".." in Path(file_name).parts:
                raise ArtifactError(f"manifest of {manifest['version']} names {file_name!r}")
            (tmp / file_name).parent.mkdir(parents=True, exist_ok=True)
            _download(
                storage, _index_key(manifest["version"], file_name), tmp / file_name,
                sha256=entry["sha256"], size=int(entry["size"]),
            )
        (tmp / VERIFIED).write_text(json.dumps(manifest, sort_keys=True))
        try:
            os.rename(tmp, local)
        except OSError:
            if not (local / VERIFIED).is_file():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("fetched index %s from the artefact store into %s", manifest["version"], local)


def _download_checkpoint(storage: Storage, model: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _download(storage, model["key"], tmp, sha256=model["sha256"], size=int(model["size"]))
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("fetched checkpoint %s from the artefact store", target)



def index_artifact_delete(*, name: str) -> None:
    """Remove version ``name`` from the store (retention). Missing files are fine."""
    storage = artifact_storage()
    manifest = index_manifest(name)
    keys = [_index_key(name, MANIFEST)]  # first: the version stops being downloadable
    keys += [_index_key(name, f) for f in (manifest or {}).get("files", {})]
    for key in keys:
        if storage.exists(key):
            storage.delete(key)


def checkpoint_artifact_delete(*, model_ref: str) -> None:
    """Remove a trained model's checkpoint from the store (retention)."""
    checkpoint = _checkpoint_path(model_ref)
    if checkpoint is None:
        return
    storage = artifact_storage()
    for key in (_model_key(checkpoint), _model_key(checkpoint) + ".sha256"):
        if storage.exists(key):
            storage.delete(key)
