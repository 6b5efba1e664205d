"""Where a run's weights start and which of them train: a checkpoint to start from (``init_from``,
which must fit), a warm start (``warm_start``, used only when it fits) and early blocks frozen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ml.model import EmbeddingNet, load_checkpoint, read_checkpoint_config

log = logging.getLogger(__name__)


def start_weights_from(model: EmbeddingNet, path: str | Path) -> None:
    """Load a checkpoint's weights into `model`; its backbone, size and head must match."""
    source, config = load_checkpoint(path)
    mine = (model.config.get("backbone"), model.dim)
    theirs = (config.get("backbone"), source.dim)
    if mine != theirs:
        raise ValueError(f"{path}: backbone/dim {theirs} do not match this run's {mine}")
    model.load_state_dict(source.state_dict(), strict=True)


def warm_start_mismatch(model: EmbeddingNet, path: str | Path) -> str | None:
    """Why the checkpoint at `path` cannot seed `model` (None when it can)."""
    try:
        theirs = read_checkpoint_config(path)
    except (OSError, ValueError, RuntimeError) as exc:
        return f"unreadable checkpoint ({exc})"
    for key, mine in (("backbone", model.config.get("backbone")), ("image_size", model.image_size),
                      ("embedding_dim", model.config.get("embedding_dim"))):
        if theirs.get(key) != mine:
            return f"{key} {theirs.get(key)!r} differs from this run's {mine!r}"
    return None


def warm_start(model: EmbeddingNet, path: str | Path) -> str | None:
    """Seed `model` from the checkpoint at `path` when it fits (:func:`warm_start_mismatch`);
    otherwise log why and keep the pretrained backbone. Returns the path used, or None."""
    why = warm_start_mismatch(model, path)
    if why is None:
        start_weights_from(model, path)
        log.info("warm start from %s", path)
        return str(path)
    log.info("no warm start from %s: %s; starting from %s", path, why, "the pretrained backbone")
    return None


def freeze_early_blocks(model: EmbeddingNet, n_blocks: int) -> int:
    """Stop gradients to the stem and the first ``n_blocks`` blocks (saves their backward pass,
    the most expensive part on CPU at high resolution). Returns the parameters frozen."""
    if n_blocks <= 0:
        return 0
    net: Any = getattr(model.backbone, "net", model.backbone)
    if hasattr(net, "_blocks"):  # efficientnet_lite_pytorch
        modules = [net._conv_stem, net._bn0, *list(net._blocks)[:n_blocks]]
    elif hasattr(net, "blocks"):  # timm EfficientNet/ConvNeXt-style
        stem = [
            m for m in (getattr(net, "conv_stem", None), getattr(net, "bn1", None)) if m is not None
        ]
        modules = [*stem, *list(net.blocks)[:n_blocks]]
    else:
        raise ValueError("freeze_blocks is not supported for this backbone")
    n = 0
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(False)
            n += p.numel()
    return n


__all__ = ["freeze_early_blocks", "start_weights_from", "warm_start", "warm_start_mismatch"]
