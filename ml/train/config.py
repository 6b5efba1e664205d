"""Training configuration and the arguments of ``python -m ml train``."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field

from ml.augment import DEFAULT_PROBS, TRANSFORM_NAMES, AugmentPolicy
from ml.losses import LOSSES


@dataclass
class TrainConfig:
    """Every knob of a run (stored in the checkpoint config under ``"train"``)."""

    data: str
    out: str
    catalogue: str | None = None
    val: str | None = None
    # The defaults are the best recipe measured (docs/training.md, "The default recipe"): end to
    # end at the backbone's size (224 px for lite0), the stem and 4 first blocks frozen, every
    # photo trained on (no hold-out), a fixed cosine schedule whose last epoch is kept.
    holdout: float = 0.0
    backbone: str = "efficientnet_lite0"
    embedding_dim: int = 256
    image_size: int | None = None
    pooling: str = "avg"
    init_from: str | None = None  # a checkpoint to start from (same backbone and dim)
    # A checkpoint to start from when it fits (same backbone, embedding size and input size);
    # otherwise the pretrained backbone, without error (the app passes the live model).
    warm_start: str | None = None
    loss: str = "multi_similarity"
    epochs: int = 24
    classes_per_batch: int = 16
    samples_per_class: int = 4
    batches_per_epoch: int | None = None
    single_category: bool = False
    lr_backbone: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    freeze_bn: bool = True
    freeze_blocks: int = 4  # cached-trunk mode: 0 means its own default, 11
    cached_views: int = 0  # > 0: cached-trunk training (ml.train.cache), views per photo
    catalogue_views: int = 16  # views per catalogue image in cached-trunk training
    trunk_cache: str | None = None  # file to reuse the trunk cache across runs
    level_weight: float = 0.0
    level_margin: float = 0.2
    multitask: bool = False
    attr_weight: float = 0.5
    attributes: list[str] | None = None
    # Seed 001's third task: a VAE (reconstruction) head on the embedding, end to end only.
    vae: bool = False
    vae_weight: float = 0.1
    vae_latent: int = 64
    vae_beta: float = 1.0
    augment: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PROBS))
    crop_min_scale: float = 0.45  # smallest crop area; "wrong crop" cause weight lowers it
    patience: int = 4
    # "best": the epoch with the best validation R@1; "last": the final epoch of the schedule
    # (for a validation split too small or too easy to choose by; no early stopping).
    select: str = "last"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None
    progress: bool = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m ml train``."""
    d = TrainConfig(data="", out="")
    p.add_argument("--data", required=True, help="training CSV (path,label[,role,negatives,...])")
    p.add_argument("--out", required=True, help="output folder (model.pt, history.json)")
    p.add_argument("--catalogue", help="extra CSV whose rows are all catalogue images")
    p.add_argument("--val", help="validation CSV of photos (default: hold out train photos)")
    p.add_argument("--holdout", type=float, default=d.holdout, help="per-label photo fraction")
    p.add_argument("--backbone", default=d.backbone, help="efficientnet_lite0/1/2 or timm:<name>")
    p.add_argument("--dim", type=int, default=d.embedding_dim, help="embedding size (0 = none)")
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's")
    p.add_argument("--pooling", default=d.pooling, choices=("avg", "gem"))
    p.add_argument("--init-from", help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument(
        "--warm-start",
        help="start from this checkpoint when its backbone, dim and size match, else from "
        "the pretrained backbone",
    )
    p.add_argument("--loss", default=d.loss, choices=sorted(LOSSES))
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--classes-per-batch", type=int, default=d.classes_per_batch, help="P")
    p.add_argument("--samples-per-class", type=int, default=d.samples_per_class, help="K")
    p.add_argument("--batches-per-epoch", type=int, default=None)
    p.add_argument("--single-category", action="store_true", help="seed 002 batches")
    p.add_argument("--lr-backbone", type=float, default=d.lr_backbone)
    p.add_argument("--lr-head", type=float, default=d.lr_head)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--no-freeze-bn", dest="freeze_bn", action="store_false")
    p.add_argument(
        "--freeze-blocks", type=int, default=None,
        help=f"freeze stem + N first blocks (default {d.freeze_blocks}; 11 with --cached-views)",
    )
    p.add_argument(
        "--cached-views",
        type=int,
        default=0,
        help="cache the frozen trunk (stem + --freeze-blocks blocks, default 11) for N "
        "augmented views per photo and train only the rest (fast on CPU)",
    )
    p.add_argument("--catalogue-views", type=int, default=d.catalogue_views)
    p.add_argument(
        "--trunk-cache", help="file holding the trunk cache; reused when its inputs match"
    )
    p.add_argument("--level-weight", type=float, default=0.0, help="multi-attribute levels")
    p.add_argument("--multitask", action="store_true", help="masked attribute heads")
    p.add_argument("--attr-weight", type=float, default=d.attr_weight)
    p.add_argument("--attributes", help="comma-separated attribute columns")
    p.add_argument("--vae", action="store_true", help="VAE (reconstruction) head, end to end")
    p.add_argument("--vae-weight", type=float, default=d.vae_weight)
    p.add_argument("--vae-latent", type=int, default=d.vae_latent)
    p.add_argument("--vae-beta", type=float, default=d.vae_beta)
    p.add_argument(
        "--augment",
        help="transform=prob,... overriding the defaults; names: " + ", ".join(TRANSFORM_NAMES),
    )
    p.add_argument("--cause-weights", help="JSON {cause: weight} from QA tags (overrides)")
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument(
        "--select", choices=("best", "last"), default=d.select,
        help="keep the best epoch by validation R@1, or the last (no early stopping)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    augment = dict(DEFAULT_PROBS)
    crop_min = 0.45
    if getattr(args, "cause_weights", None):
        policy = AugmentPolicy.from_cause_weights(json.loads(args.cause_weights))
        augment, crop_min = dict(policy.probs), policy.crop_scale[0]
    for part in (args.augment or "").split(","):
        if part.strip():
            name, _, value = part.partition("=")
            augment[name.strip()] = float(value)
    return TrainConfig(
        data=args.data,
        out=args.out,
        catalogue=args.catalogue,
        val=args.val,
        holdout=args.holdout,
        backbone=args.backbone,
        embedding_dim=args.dim,
        image_size=args.image_size,
        pooling=args.pooling,
        init_from=args.init_from,
        warm_start=args.warm_start,
        loss=args.loss,
        epochs=args.epochs,
        classes_per_batch=args.classes_per_batch,
        samples_per_class=args.samples_per_class,
        batches_per_epoch=args.batches_per_epoch,
        single_category=args.single_category,
        lr_backbone=args.lr_backbone,
        lr_head=args.lr_head,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        freeze_bn=args.freeze_bn,
        freeze_blocks=(
            args.freeze_blocks if args.freeze_blocks is not None
            else 11 if args.cached_views else TrainConfig.freeze_blocks
        ),
        cached_views=args.cached_views,
        catalogue_views=args.catalogue_views,
        trunk_cache=args.trunk_cache,
        level_weight=args.level_weight,
        multitask=args.multitask,
        attr_weight=args.attr_weight,
        attributes=[a.strip() for a in args.attributes.split(",")] if args.attributes else None,
        vae=args.vae,
        vae_weight=args.vae_weight,
        vae_latent=args.vae_latent,
        vae_beta=args.vae_beta,
        augment=augment,
        crop_min_scale=crop_min,
        patience=args.patience,
        select=args.select,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        max_minutes=args.max_minutes,
        progress=args.progress,
    )


__all__ = ["TrainConfig", "add_arguments", "config_from_args"]
