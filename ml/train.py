"""Metric-learning trainer and ``python -m ml train``.

Recipe (seeds 000-002): pretrained backbone + linear head, L2-normalised; class-balanced
P x K batches with the catalogue image in every label's slot; a PML loss with online mining
(plus review-queue negatives); optional multi-attribute level triplets and masked attribute
heads; AdamW with separate backbone/head learning rates, linear warm-up then cosine decay;
frozen BatchNorm statistics (small batches); bf16 autocast on CUDA; selection and early
stopping on photo -> catalogue Recall@1 of a validation set (a CSV or a per-label hold-out
of the training photos). The selected model is written with :func:`ml.model.save_checkpoint`,
so ``python -m ml evaluate --model`` and the app load it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ml.augment import DEFAULT_PROBS, TRANSFORM_NAMES, AugmentPolicy
from ml.embed import configure_threads, resolve_device
from ml.evaluate import evaluate_embeddings
from ml.losses import (
    LOSSES,
    AttributeHeads,
    LevelTripletLoss,
    build_criterion,
    masked_attribute_loss,
)
from ml.model import EmbeddingNet, build_model, freeze_batchnorm, save_checkpoint
from ml.sampling import CATALOGUE, PKBatchSampler
from ml.train_data import (
    BatchMaker,
    ImageCache,
    TrainItem,
    choose_attributes,
    encode_attributes,
    eval_tensor,
    read_training_csv,
    split_holdout,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every knob of a run (stored in the checkpoint config under ``"train"``)."""

    data: str
    out: str
    catalogue: str | None = None
    val: str | None = None
    holdout: float = 0.15
    backbone: str = "efficientnet_lite0"
    embedding_dim: int = 256
    image_size: int | None = None
    pooling: str = "avg"
    loss: str = "multi_similarity"
    epochs: int = 20
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
    freeze_blocks: int = 0
    level_weight: float = 0.0
    level_margin: float = 0.2
    multitask: bool = False
    attr_weight: float = 0.5
    attributes: list[str] | None = None
    augment: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PROBS))
    patience: int = 4
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None
    progress: bool = True


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Multiplier of the base LR at step ``s``: linear warm-up, then cosine to ``min_ratio``."""

    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def freeze_early_blocks(model: EmbeddingNet, n_blocks: int) -> int:
    """Stop gradients to the stem and the first ``n_blocks`` blocks (saves their backward pass,
    the most expensive part on CPU at high resolution). Returns the parameters frozen."""
    if n_blocks <= 0:
        return 0
    net = getattr(model.backbone, "net", model.backbone)
    if hasattr(net, "_blocks"):  # efficientnet_lite_pytorch
        modules = [net._conv_stem, net._bn0, *list(net._blocks)[:n_blocks]]
    elif hasattr(net, "blocks"):  # timm EfficientNet/ConvNeXt-style
        stem = [m for m in (getattr(net, "conv_stem", None), getattr(net, "bn1", None)) if m]
        modules = [*stem, *list(net.blocks)[:n_blocks]]
    else:
        raise ValueError("freeze_blocks is not supported for this backbone")
    n = 0
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(False)
            n += p.numel()
    return n


class Trainer:
    """One training run; :meth:`fit` returns the history and writes ``out/model.pt``."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        seed_everything(cfg.seed)
        configure_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)

        items = read_training_csv(cfg.data)
        if cfg.catalogue:
            items = read_training_csv(cfg.catalogue, role=CATALOGUE) + items
        if cfg.val:
            self.train_items, self.val_items = items, read_training_csv(cfg.val, role="photo")
        else:
            self.train_items, self.val_items = split_holdout(items, cfg.holdout, seed=cfg.seed)
        self.catalogue_items = [it for it in self.train_items if it.role == CATALOGUE]

        self.labels = sorted({it.label for it in self.train_items})
        self.label_index = {lab: i for i, lab in enumerate(self.labels)}
        self.attr_names = choose_attributes(self.train_items, cfg.attributes)
        self.attr_codes, self.attr_vocab = encode_attributes(self.train_items, self.attr_names)
        self.label_tensor = torch.tensor([self.label_index[it.label] for it in self.train_items])

        self.model = build_model(
            cfg.backbone,
            embedding_dim=cfg.embedding_dim or None,
            image_size=cfg.image_size,
            pooling=cfg.pooling,
        )
        if cfg.freeze_bn:
            freeze_batchnorm(self.model)
        freeze_early_blocks(self.model, cfg.freeze_blocks)
        self.image_size = self.model.image_size
        self.cpu = self.device.type == "cpu"
        self.model.to(self.device)
        if self.cpu:  # oneDNN convolutions are ~1.8x faster in NHWC on CPU
            self.model.to(memory_format=torch.channels_last)

        self.criterion = build_criterion(cfg.loss)
        self.level_loss = LevelTripletLoss(cfg.level_margin) if cfg.level_weight > 0 else None
        self.heads: nn.Module | None = None
        if cfg.multitask and self.attr_names:
            cards = {n: max(1, len(self.attr_vocab[n])) for n in self.attr_names}
            self.heads = AttributeHeads(self.model.dim, cards).to(self.device)

        self.sampler = PKBatchSampler(
            [it.label for it in self.train_items],
            [it.role for it in self.train_items],
            classes_per_batch=cfg.classes_per_batch,
            samples_per_class=cfg.samples_per_class,
            categories=[it.category or "" for it in self.train_items],
            negatives=[it.negatives for it in self.train_items],
            single_category=cfg.single_category,
            batches_per_epoch=cfg.batches_per_epoch,
            seed=cfg.seed,
        )
        self.cache = ImageCache(side=int(self.image_size * 1.15))
        self.policy = AugmentPolicy(self.image_size, probs=dict(cfg.augment))
        self.optimizer = self._optimizer()
        steps = cfg.epochs * len(self.sampler)
        warmup = int(cfg.warmup_epochs * len(self.sampler))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(steps, warmup, cfg.min_lr_ratio)
        )

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        backbone = [p for p in self.model.backbone_parameters() if p.requires_grad]
        head = [p for p in self.model.head_parameters() if p.requires_grad]
        pooling = [p for p in self.model.backbone.parameters() if p.ndim == 0 and p.requires_grad]
        backbone = [p for p in backbone if all(p is not q for q in pooling)]
        groups = [
            {"params": backbone, "lr": cfg.lr_backbone, "name": "backbone"},
            {"params": head + pooling, "lr": cfg.lr_head, "name": "head"},
        ]
        if self.heads is not None:
            groups.append(
                {"params": list(self.heads.parameters()), "lr": cfg.lr_head, "name": "attr"}
            )
        return torch.optim.AdamW(
            [g for g in groups if g["params"]], weight_decay=cfg.weight_decay
        )

    # ----- one step -------------------------------------------------------------------------

    def _negative_mask(self, idx: Sequence[int]) -> torch.Tensor | None:
        negs = [set(self.train_items[i].negatives) for i in idx]
        if not any(negs):
            return None
        labels = [self.train_items[i].label for i in idx]
        m = torch.tensor([[lab in n for lab in labels] for n in negs], dtype=torch.bool)
        return (m | m.T).to(self.device)  # wrong for one side is wrong for the pair

    def train_step(self, idx: Sequence[int], *, epoch: int, step: int) -> dict[str, float]:
        """One optimiser step on the items ``idx``; returns the loss terms."""
        x = self.batch_maker.make(idx, epoch=epoch, step=step).to(self.device)
        if self.cpu:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = self.label_tensor[list(idx)].to(self.device)
        attrs = self.attr_codes[list(idx)].to(self.device)
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        ):
            emb = self.model(x)
        emb = emb.float()
        loss = self.criterion(emb, labels, attrs=attrs, negative_mask=self._negative_mask(idx))
        terms = {"metric": float(loss.detach())}
        if self.level_loss is not None:
            lv = self.level_loss(emb, labels, attrs)
            terms["level"] = float(lv.detach())
            loss = loss + self.cfg.level_weight * lv
        if self.heads is not None:
            al = masked_attribute_loss(self.heads(emb), attrs)
            terms["attr"] = float(al.detach())
            loss = loss + self.cfg.attr_weight * al
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        terms["loss"] = float(loss.detach())
        return terms

    # ----- validation -----------------------------------------------------------------------

    @torch.no_grad()
    def embed_items(self, items: Sequence[TrainItem], batch_size: int = 64) -> np.ndarray:
        """``[n, dim]`` float32 embeddings with the deterministic evaluation preprocessing."""
        self.model.eval()
        out = []
        for start in range(0, len(items), batch_size):
            images = [self.cache.get(it.path) for it in items[start : start + batch_size]]
            x = eval_tensor(
                images, self.image_size, self.model.normalisation, self.model.resize_mode
            ).to(self.device)
            if self.cpu:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device_type=self.device.type,
                dtype=torch.bfloat16,
                enabled=self.device.type == "cuda",
            ):
                out.append(self.model(x).float().cpu().numpy())
        self.model.train()
        return np.concatenate(out) if out else np.zeros((0, self.model.dim), np.float32)

    def validate(self) -> dict[str, float]:
        """Photo -> catalogue metrics on the validation photos (empty dict without them)."""
        if not self.val_items or not self.catalogue_items:
            return {}
        known = [it for it in self.val_items if it.label in self.label_index]
        gallery = self.embed_items(self.catalogue_items)
        queries = self.embed_items(known)
        g_labels = np.array([self.label_index[it.label] for it in self.catalogue_items])
        q_labels = np.array([self.label_index[it.label] for it in known])
        rep = evaluate_embeddings(gallery, g_labels, queries, q_labels)
        return {"val_r1": rep.recall_at_1, "val_r4": rep.recall_at_4, "val_map_r": rep.map_at_r}

    # ----- the loop ---------------------------------------------------------------------------

    def fit(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        t0 = time.perf_counter()
        n_cached = self.cache.warm(it.path for it in [*self.train_items, *self.val_items])
        log.info("cached %d images in %.1f s", n_cached, time.perf_counter() - t0)
        self.batch_maker = BatchMaker(
            self.train_items, self.cache, self.policy, self.model.normalisation, seed=cfg.seed
        )
        history: list[dict[str, Any]] = []
        best, best_epoch, stale = -1.0, -1, 0
        steps_per_epoch = len(self.sampler)
        total_steps = cfg.epochs * steps_per_epoch
        done_steps, train_seconds, images_seen = 0, 0.0, 0
        base = self.validate()
        if base:
            log.info("epoch 0 (pretrained) %s", _fmt(base))
            history.append({"epoch": 0, **base})
        self.model.train()
        for epoch in range(1, cfg.epochs + 1):
            self.sampler.set_epoch(epoch)
            sums: dict[str, float] = {}
            bar = tqdm(
                self.sampler,
                total=steps_per_epoch,
                desc=f"epoch {epoch}/{cfg.epochs}",
                disable=not cfg.progress,
                dynamic_ncols=True,
            )
            t_epoch = time.perf_counter()
            for step, idx in enumerate(bar):
                terms = self.train_step(idx, epoch=epoch, step=step)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                done_steps += 1
                images_seen += len(idx)
                elapsed = train_seconds + time.perf_counter() - t_epoch
                rate = images_seen / max(elapsed, 1e-9)
                eta = (total_steps - done_steps) * elapsed / done_steps
                bar.set_postfix(
                    loss=f"{terms['loss']:.4f}", img_s=f"{rate:.1f}", eta=_hms(eta), refresh=False
                )
            train_seconds += time.perf_counter() - t_epoch
            row: dict[str, Any] = {"epoch": epoch, "step": done_steps}
            row.update({k: v / steps_per_epoch for k, v in sums.items()})
            row.update({"img_per_s": images_seen / train_seconds, "train_s": train_seconds})
            row.update(self.validate())
            history.append(row)
            log.info("epoch %d %s", epoch, _fmt(row))
            # Without validation photos every epoch is "best": the last one is kept.
            score = row.get("val_r1", float(epoch))
            if score > best:
                best, best_epoch, stale = score, epoch, 0
                self.save(self.out / "model.pt", row)
            else:
                stale += 1
            (self.out / "history.json").write_text(json.dumps(history, indent=1))
            if self.val_items and stale >= cfg.patience:
                log.info("early stop: no val improvement for %d epochs", stale)
                break
            if cfg.max_minutes and (time.perf_counter() - t0) / 60 > cfg.max_minutes:
                log.info("stopping: time budget of %.1f min reached", cfg.max_minutes)
                break
        summary = {"best_epoch": best_epoch, "best_val_r1": best, "wall_s": time.perf_counter() - t0}
        (self.out / "history.json").write_text(json.dumps(history + [summary], indent=1))
        log.info("done: best epoch %d, wall %.0f s", best_epoch, summary["wall_s"])
        return history

    def save(self, path: Path, metrics: dict[str, Any]) -> None:
        train_cfg = asdict(self.cfg)
        train_cfg["attributes"] = self.attr_names
        config = {"train": train_cfg, "labels": len(self.labels)}
        save_checkpoint(path, self.model, config, metrics)


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


# ----- command line --------------------------------------------------------------------------


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
    p.add_argument("--freeze-blocks", type=int, default=0, help="freeze stem + N first blocks")
    p.add_argument("--level-weight", type=float, default=0.0, help="multi-attribute levels")
    p.add_argument("--multitask", action="store_true", help="masked attribute heads")
    p.add_argument("--attr-weight", type=float, default=d.attr_weight)
    p.add_argument("--attributes", help="comma-separated attribute columns")
    p.add_argument(
        "--augment",
        help="transform=prob,... overriding the defaults; names: " + ", ".join(TRANSFORM_NAMES),
    )
    p.add_argument("--cause-weights", help="JSON {cause: weight} from QA tags (overrides)")
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    augment = dict(DEFAULT_PROBS)
    if getattr(args, "cause_weights", None):
        augment = AugmentPolicy.from_cause_weights(json.loads(args.cause_weights)).probs
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
        freeze_blocks=args.freeze_blocks,
        level_weight=args.level_weight,
        multitask=args.multitask,
        attr_weight=args.attr_weight,
        attributes=[a.strip() for a in args.attributes.split(",")] if args.attributes else None,
        augment=augment,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        max_minutes=args.max_minutes,
        progress=args.progress,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``python -m ml train``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    log.info(
        "train %d items (%d catalogue), %d labels, val %d photos, attributes %s, %d steps/epoch",
        len(trainer.train_items),
        len(trainer.catalogue_items),
        len(trainer.labels),
        len(trainer.val_items),
        trainer.attr_names,
        len(trainer.sampler),
    )
    log.info("augment: %s", trainer.policy.describe())
    trainer.fit()
    print(trainer.out / "model.pt")
    return 0


__all__ = ["TrainConfig", "Trainer", "add_arguments", "config_from_args", "lr_lambda", "run"]
