"""The model registry: every model that was trained here or ever served, with its provenance.

A trained checkpoint is copied into MODELS_DIR under a content-addressed name and never
changes again, so a rollback loads exactly what was evaluated.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from webapp import ml_gateway
from webapp.learning.models import IndexVersion, ModelVersion, TrainingRun
from webapp.learning.selectors import active_index_version, live_model_ref


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_store(*, source: Path, stem: str) -> Path:
    """Copy a checkpoint into the registry folder (atomically); returns its final path."""
    # <sha>/<stem>.pt: the embedder names it "<stem>-<sha>", the version decisions record.
    folder = Path(settings.MODELS_DIR) / _sha256(source)[:12]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.pt"
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    return target.resolve()


@transaction.atomic
def model_version_register(
    *,
    model_ref: str,
    source: str,
    name: str = "",
    training_run: TrainingRun | None = None,
    data_snapshot: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    """Register a model (idempotent on `model_ref`); `name` defaults to the embedder's."""
    model, _created = ModelVersion.objects.get_or_create(
        model_ref=model_ref,
        defaults={
            "name": name or ml_gateway.embedder_name(model_ref),
            "source": source,
            "training_run": training_run,
            "data_snapshot": data_snapshot or {},
            "config": config or {},
            "metrics": metrics or {},
        },
    )
    return model


def model_version_register_live() -> ModelVersion:
    """The live model's registry row, created on first sight (e.g. the pretrained baseline)."""
    ref = live_model_ref()
    existing = ModelVersion.objects.filter(model_ref=ref).first()
    if existing is not None:
        return existing
    source = ModelVersion.Source.TRAINED if Path(ref).is_file() else ModelVersion.Source.PRETRAINED
    # The active index records the network's name: no need to load the model (web process).
    index = active_index_version()
    name = index.model_version.split("|")[0] if index and index.model_ref == ref else ""
    model = model_version_register(model_ref=ref, source=source, name=name)
    if model.promoted_at is None:
        first = IndexVersion.objects.filter(model_ref=ref).order_by("created_at").first()
        live_since = first.created_at if first else model.created_at
        ModelVersion.objects.filter(pk=model.pk).update(promoted_at=live_since)
        model.refresh_from_db()
    return model
