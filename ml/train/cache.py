"""Cached-trunk training: run the frozen early layers once per augmented view, train the rest.

On a small shared CPU the forward/backward pass of the whole network is the bottleneck
(~4-15 img/s for EfficientNet-Lite0). When the stem and the first ``cut`` blocks are frozen
anyway, their output for a fixed set of augmented views of every image can be computed once
and kept in memory (fp16); each training step then only runs the trainable blocks, which is
~6x cheaper per sample at ``cut=11``. The price is a finite set of augmentations per image
(``views``), so catalogue images, the scarce side of photo -> catalogue retrieval, get more.

Only the EfficientNet-Lite backbones (``efficientnet_lite_pytorch``) are split here.
The saved checkpoint is the ordinary full :class:`~ml.model.EmbeddingNet`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ml.model import EmbeddingNet

log = logging.getLogger(__name__)

MakeViews = Callable[[Sequence[int], Sequence[int]], torch.Tensor]


class LiteSplit:
    """Frozen prefix and trainable suffix of an EfficientNet-Lite :class:`EmbeddingNet`.

    ``suffix(prefix(x))`` equals ``model(x)`` (same blocks, same drop-connect schedule).
    """

    def __init__(self, model: EmbeddingNet, cut: int) -> None:
        net: Any = getattr(model.backbone, "net", None)
        if net is None or not hasattr(net, "_blocks"):
            raise ValueError("cached-trunk training needs an efficientnet_lite backbone")
        if not 0 < cut < len(net._blocks):
            raise ValueError(f"cut must be in 1..{len(net._blocks) - 1}")
        self.model, self.net, self.cut = model, net, cut

    @torch.no_grad()
    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, 3, H, W]`` -> trunk features ``[batch, C, h, w]`` (no gradients)."""
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x)))
        for block in list(net._blocks)[: self.cut]:
            h = block(h)  # drop-connect only touches training-time residuals; prefix is frozen
        return h

    def suffix(self, h: torch.Tensor) -> torch.Tensor:
        """Trunk features ``[batch, C, h, w]`` -> unit-length embeddings ``[batch, dim]``."""
        net = self.net
        blocks = list(net._blocks)
        rate = net._global_params.drop_connect_rate
        for idx in range(self.cut, len(blocks)):
            h = blocks[idx](h, drop_connect_rate=rate * idx / len(blocks) if rate else None)
        h = net._swish(net._bn1(net._conv_head(h)))
        pool: Any = getattr(self.model.backbone, "pool")  # noqa: B009 - typed as a Module
        feats = pool(h)
        return F.normalize(self.model.head(feats).float(), p=2.0, dim=1)


class FeatureBank:
    """Trunk features of ``views`` augmented views per item, fp16, in one tensor.

    Args:
        split: the model split.
        n_items: number of training items.
        views_per_item: ``[n_items]`` number of views for each item.
        make_views: ``(item indices, view numbers) -> [batch, 3, H, W]`` input tensor; it
            must be deterministic for repeatable runs.
        batch_size: prefix batch size.
    """

    def __init__(
        self,
        split: LiteSplit,
        views_per_item: Sequence[int],
        make_views: MakeViews,
        *,
        batch_size: int = 64,
        device: torch.device | None = None,
        channels_last: bool = False,
        progress: bool = True,
    ) -> None:
        jobs = [(i, v) for i, n in enumerate(views_per_item) for v in range(n)]
        self.offsets = [0]
        for n in views_per_item:
            self.offsets.append(self.offsets[-1] + n)
        self.views_per_item = list(views_per_item)
        chunks: list[torch.Tensor] = []
        t0 = time.perf_counter()
        bar = tqdm(
            range(0, len(jobs), batch_size), desc="trunk cache", disable=not progress, ncols=100
        )
        for start in bar:
            part = jobs[start : start + batch_size]
            x = make_views([i for i, _ in part], [v for _, v in part])
            if device is not None:
                x = x.to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            chunks.append(split.prefix(x).to(torch.float16).cpu())
        self.features = torch.cat(chunks) if chunks else torch.empty(0)
        self.seconds = time.perf_counter() - t0

    def gather(self, items: Sequence[int], rng: random.Random) -> torch.Tensor:
        """One random view of each item: ``[len(items), C, h, w]`` float32."""
        rows = [self.offsets[i] + rng.randrange(self.views_per_item[i]) for i in items]
        return self.features[rows].float()

    def state(self) -> dict[str, object]:
        return {"features": self.features, "views": self.views_per_item}

    @classmethod
    def from_state(cls, state: dict[str, object]) -> FeatureBank:
        bank = cls.__new__(cls)
        bank.features = state["features"]  # type: ignore[assignment]
        bank.views_per_item = list(state["views"])  # type: ignore[call-overload]
        bank.offsets = [0]
        for n in bank.views_per_item:
            bank.offsets.append(bank.offsets[-1] + n)
        bank.seconds = 0.0
        return bank

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()


def trunk_cache_key(parts: Mapping[str, Any]) -> str:
    """Everything the trunk cache depends on (items, views, model, cut, augmentation, seed),
    hashed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def build_banks(
    split: LiteSplit,
    views: Sequence[int],
    make_views: MakeViews,
    *,
    val_views: Sequence[int],
    make_val: MakeViews | None,
    key: str,
    path: Path | None,
    device: torch.device,
    channels_last: bool,
    progress: bool,
) -> tuple[FeatureBank, FeatureBank | None]:
    """The training bank and (given ``make_val``) the validation bank; reused from ``path``
    when it holds banks for ``key`` (:func:`trunk_cache_key`), and saved there otherwise."""
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("key") == key:
            log.info("trunk cache reused from %s", path)
            val_state = FeatureBank.from_state(state["val"]) if state["val"] else None
            return FeatureBank.from_state(state["train"]), val_state
        log.info("trunk cache %s is for other inputs: rebuilding", path)
    opts: dict[str, Any] = {"device": device, "channels_last": channels_last, "progress": progress}
    bank = FeatureBank(split, views, make_views, **opts)
    log.info(
        "trunk cache: %d views, %.0f MB, %.1f s (%.1f img/s)",
        sum(views),
        bank.nbytes / 2**20,
        bank.seconds,
        sum(views) / max(bank.seconds, 1e-9),
    )
    val_bank = FeatureBank(split, val_views, make_val, **opts) if make_val is not None else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        saved_val = val_bank.state() if val_bank else None
        torch.save({"key": key, "train": bank.state(), "val": saved_val}, path)
    return bank, val_bank


@torch.no_grad()
def embed_bank(
    split: LiteSplit,
    bank: FeatureBank,
    device: torch.device,
    *,
    channels_last: bool,
    batch_size: int = 128,
) -> np.ndarray:
    """Embeddings ``[n, dim]`` of a one-view bank through the trainable suffix."""
    split.model.eval()
    out = []
    for start in range(0, bank.features.shape[0], batch_size):
        h = bank.features[start : start + batch_size].float().to(device)
        if channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        out.append(split.suffix(h).cpu().numpy())
    split.model.train()
    return np.concatenate(out)


__all__ = ["FeatureBank", "LiteSplit", "build_banks", "embed_bank", "trunk_cache_key"]
