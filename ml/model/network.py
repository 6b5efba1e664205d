"""The embedding network: ``EmbeddingNet`` and :func:`build_model`.

``EmbeddingNet`` = pretrained backbone (:mod:`ml.model.backbones`) -> global pooled features
-> optional linear head -> L2 normalisation, so cosine similarity is a plain inner product.
Its ``config`` (``backbone``, ``embedding_dim``, ``image_size``, ``normalisation``,
``pooling``) is everything needed to rebuild it offline (:mod:`ml.model.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ml.model.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    POOLINGS,
    TIMM_PREFIX,
    BackboneUnavailableError,
    _build_lite,
    _build_timm,
    is_known_backbone,
)
from ml.model.preprocess import IMAGENET_NORMALISATION, RESIZE_MODES, Normalisation

CHECKPOINT_FORMAT = 1


class EmbeddingNet(nn.Module):
    """Backbone -> pooled features -> optional linear head -> L2 normalisation.

    Attributes:
        backbone: module mapping ``[batch, 3, H, W]`` to ``[batch, feature_dim]``.
        head: ``nn.Linear(feature_dim, embedding_dim)`` or ``nn.Identity``.
        config: the checkpoint config (backbone, embedding_dim, image_size, normalisation, pooling).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        feature_dim: int,
        embedding_dim: int | None,
        config: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head: nn.Module = (
            nn.Linear(feature_dim, embedding_dim) if embedding_dim else nn.Identity()
        )
        self.dim = int(embedding_dim or feature_dim)
        self.config: dict[str, Any] = dict(config)
        self.bn_frozen = False

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def normalisation(self) -> Normalisation:
        return Normalisation.from_any(self.config["normalisation"])

    @property
    def resize_mode(self) -> str:
        return str(self.config.get("resize", "center_crop"))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, unnormalised features: ``[batch, 3, H, W] -> [batch, feature_dim]``."""
        out: torch.Tensor = self.backbone(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, 3, H, W]`` (already normalised) -> unit-length ``[batch, dim]``."""
        emb = self.head(self.features(x))
        # float32 normalisation keeps unit length exact under bf16 autocast.
        return F.normalize(emb.float(), p=2.0, dim=1)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        return self.head.parameters()

    def train(self, mode: bool = True) -> EmbeddingNet:
        super().train(mode)
        if self.bn_frozen:
            _set_bn_eval(self)
        return self


_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _set_bn_eval(model: nn.Module) -> int:
    n = 0
    for module in model.modules():
        if isinstance(module, _BN_TYPES):
            module.eval()
            n += 1
    return n


def freeze_batchnorm(model: nn.Module, *, freeze_affine: bool = False) -> int:
    """Keep every BatchNorm layer on its ImageNet running statistics during training.

    Small class-balanced metric-learning batches give noisy batch statistics, so fine-tuning
    usually works better with BN in eval mode. On an :class:`EmbeddingNet` this survives later
    ``model.train()`` calls. ``freeze_affine`` also stops gradients to BN weight and bias.

    Returns:
        The number of BatchNorm layers frozen.
    """
    if isinstance(model, EmbeddingNet):
        model.bn_frozen = True
    n = _set_bn_eval(model)
    if freeze_affine:
        for module in model.modules():
            if isinstance(module, _BN_TYPES):
                for p in module.parameters():
                    p.requires_grad_(False)
    return n


def set_backbone_trainable(model: EmbeddingNet, trainable: bool) -> None:
    """Freeze or unfreeze the backbone (e.g. to warm up only the head first)."""
    for p in model.backbone_parameters():
        p.requires_grad_(trainable)


def build_model(
    backbone: str = DEFAULT_BACKBONE,
    *,
    embedding_dim: int | None = None,
    pretrained: bool = True,
    image_size: int | None = None,
    pooling: str = "avg",
    weights_path: str | None = None,
    resize: str = "center_crop",
) -> EmbeddingNet:
    """Build an :class:`EmbeddingNet`.

    Args:
        backbone: a key of :data:`BACKBONES` or ``"timm:<name>"``.
        embedding_dim: output size of the linear head; ``None`` = no head (pooled features).
        pretrained: load ImageNet weights (lite: from the installed package; timm: from
            ``weights_path`` or the hub).
        image_size: input resolution; defaults to the backbone's native one.
        pooling: ``"avg"`` or ``"gem"``.
        weights_path: local weights file for a timm backbone.
        resize: evaluation resize mode stored in the config (see :func:`resize_for_model`).

    Raises:
        BackboneUnavailableError: unknown backbone, or weights that cannot be obtained.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, got {pooling!r}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    config: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "backbone": backbone,
        "embedding_dim": embedding_dim,
        "pooling": pooling,
        "resize": resize,
    }
    if backbone in BACKBONES:
        spec = BACKBONES[backbone]
        size = int(image_size or spec.image_size)
        module, feature_dim = _build_lite(
            spec, pretrained=pretrained, image_size=size, pooling=pooling
        )
        norm = spec.normalisation
    elif is_known_backbone(backbone):
        name = backbone[len(TIMM_PREFIX) :]
        module, feature_dim, cfg = _build_timm(
            name, pretrained=pretrained, weights_path=weights_path, pooling=pooling
        )
        size = int(image_size or cfg.get("input_size", (3, 224, 224))[-1])
        norm = Normalisation(
            "timm",
            tuple(cfg.get("mean", IMAGENET_NORMALISATION.mean)),
            tuple(cfg.get("std", IMAGENET_NORMALISATION.std)),
        )
        if weights_path:
            config["weights_path"] = str(weights_path)
    else:
        known = ", ".join(sorted(BACKBONES))
        raise BackboneUnavailableError(f"unknown backbone {backbone!r}; use {known} or timm:<name>")
    config.update({"image_size": size, "normalisation": norm.to_dict(), "feature_dim": feature_dim})
    return EmbeddingNet(module, feature_dim=feature_dim, embedding_dim=embedding_dim, config=config)


def config_summary(config: Mapping[str, Any]) -> str:
    """One-line description of a model config for logs."""
    return (
        f"{config.get('backbone')} dim={config.get('embedding_dim') or config.get('feature_dim')} "
        f"size={config.get('image_size')} pool={config.get('pooling', 'avg')}"
    )
