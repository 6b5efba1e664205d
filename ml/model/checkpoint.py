"""Checkpoints: ``torch.save({"state_dict", "config", "metrics"})`` written atomically.

``config`` holds everything needed to rebuild the network offline (``backbone``,
``embedding_dim``, ``image_size``, ``normalisation``, ``pooling``), see :func:`load_checkpoint`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ml.model.network import EmbeddingNet, build_model

# Checkpoint entry holding the attribute heads of a --multitask model (names, value lists,
# weights, scale), read by ml.rerank.attributes.
ATTRIBUTE_HEADS_KEY = "attribute_heads"


def save_checkpoint(
    path: str | Path,
    model: EmbeddingNet,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``{"state_dict", "config", "metrics"}`` atomically (temp file + ``os.replace``).

    ``config`` extends the model's own config (e.g. with training hyper-parameters); the keys
    needed to rebuild the network always come from the model. ``extra`` adds top-level
    entries of plain data and tensors (the attribute heads: ``ml.rerank.attributes``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**dict(config or {}), **model.config}
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": merged,
        "metrics": dict(metrics or {}),
        **dict(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[EmbeddingNet, dict[str, Any]]:
    """Rebuild the network from a checkpoint without touching the network (``pretrained=False``).

    Returns:
        ``(model in eval mode, config)``; ``config["metrics"]`` is not included, read it with
        :func:`read_checkpoint_metrics` if needed.
    """
    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise ValueError(f"{path}: not an SKU Lens checkpoint (expected state_dict and config)")
    config = dict(payload["config"])
    model = build_model(
        config["backbone"],
        embedding_dim=config.get("embedding_dim"),
        pretrained=False,
        image_size=config.get("image_size"),
        pooling=config.get("pooling", "avg"),
        resize=config.get("resize", "center_crop"),
    )
    model.load_state_dict(payload["state_dict"], strict=True)
    model.config.update(config)
    model.to(map_location).eval()
    return model, config


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The ``config`` dict stored in a checkpoint (backbone, embedding_dim, image_size, ...)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "config" not in payload:
        raise ValueError(f"{path}: not an SKU Lens checkpoint (expected state_dict and config)")
    return dict(payload["config"])


def read_checkpoint_metrics(path: str | Path) -> dict[str, Any]:
    """The ``metrics`` dict stored in a checkpoint."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    return dict(payload.get("metrics") or {})
