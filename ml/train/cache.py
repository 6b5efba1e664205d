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

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ml.model import EmbeddingNet


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
        make_views: Callable[[Sequence[int], Sequence[int]], torch.Tensor],
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


__all__ = ["FeatureBank", "LiteSplit"]
