"""Validation during training: photo -> catalogue retrieval on the validation photos, embedded
with the deterministic evaluation preprocessing (the same pixels ``python -m ml evaluate`` and
the app feed the network)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ml.evaluate import evaluate_embeddings
from ml.model import EmbeddingNet
from ml.train.data import ImageCache, TrainItem, eval_tensor


@torch.no_grad()
def embed_items(
    model: EmbeddingNet,
    cache: ImageCache,
    items: Sequence[TrainItem],
    device: torch.device,
    *,
    batch_size: int = 64,
) -> np.ndarray:
    """``[n, dim]`` float32 embeddings with the deterministic evaluation preprocessing (bf16
    autocast on CUDA, channels-last on CPU); the model is back in training mode after."""
    model.eval()
    out = []
    for start in range(0, len(items), batch_size):
        images = [cache.get(it.path) for it in items[start : start + batch_size]]
        x = eval_tensor(images, model.image_size, model.normalisation, model.resize_mode).to(device)
        if device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device_type=device.type,
            dtype=torch.bfloat16,
            enabled=device.type == "cuda",
        ):
            out.append(model(x).float().cpu().numpy())
    model.train()
    return np.concatenate(out) if out else np.zeros((0, model.dim), np.float32)


def retrieval_metrics(
    gallery: np.ndarray, gallery_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray
) -> dict[str, float]:
    """``val_r1``, ``val_r4`` and ``val_map_r`` of ``queries [q, dim]`` against ``gallery [g, dim]``
    (labels ``[g]`` and ``[q]``)."""
    rep = evaluate_embeddings(gallery, gallery_labels, queries, query_labels)
    return {"val_r1": rep.recall_at_1, "val_r4": rep.recall_at_4, "val_map_r": rep.map_at_r}


__all__ = ["embed_items", "retrieval_metrics"]
