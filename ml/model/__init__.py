"""The embedding network and its checkpoint format (shared by ``ml.embed`` and ``ml.train``).

One concept a module: :mod:`.backbones` (named backbones, timm, pooling), :mod:`.network`
(``EmbeddingNet``, :func:`build_model`, BatchNorm freezing), :mod:`.checkpoint` (atomic
save, offline load), :mod:`.preprocess` (resize modes and normalisation).
Callers import from here: ``from ml.model import build_model, load_checkpoint``.
"""

from ml.model.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    POOLINGS,
    TIMM_PREFIX,
    BackboneSpec,
    BackboneUnavailableError,
    GeM,
    is_known_backbone,
)
from ml.model.checkpoint import (
    ATTRIBUTE_HEADS_KEY,
    load_checkpoint,
    read_checkpoint_config,
    read_checkpoint_metrics,
    save_checkpoint,
)
from ml.model.network import (
    CHECKPOINT_FORMAT,
    EmbeddingNet,
    build_model,
    config_summary,
    freeze_batchnorm,
    set_backbone_trainable,
)
from ml.model.preprocess import (
    IMAGENET_NORMALISATION,
    LITE_NORMALISATION,
    NORMALISATIONS,
    RESIZE_MODES,
    Normalisation,
    preprocess,
    resize_for_model,
    to_tensor,
)

__all__ = [
    "ATTRIBUTE_HEADS_KEY",
    "BACKBONES",
    "CHECKPOINT_FORMAT",
    "DEFAULT_BACKBONE",
    "IMAGENET_NORMALISATION",
    "LITE_NORMALISATION",
    "NORMALISATIONS",
    "POOLINGS",
    "RESIZE_MODES",
    "TIMM_PREFIX",
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
    "read_checkpoint_config",
    "read_checkpoint_metrics",
    "resize_for_model",
    "save_checkpoint",
    "set_backbone_trainable",
    "to_tensor",
]
