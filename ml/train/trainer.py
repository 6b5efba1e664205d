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
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ml.augment import AugmentPolicy
from ml.embed import configure_threads, resolve_device
from ml.evaluate import evaluate_embeddings
from ml.losses import (
    AttributeHeads,
    LevelTripletLoss,
    VaeHead,
    build_criterion,
    masked_attribute_loss,
    vae_loss,
)
from ml.model import (
    ATTRIBUTE_HEADS_KEY,
    EmbeddingNet,
    build_model,
    freeze_batchnorm,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from ml.sampling import CATALOGUE, PKBatchSampler
from ml.train.cache import FeatureBank, LiteSplit
from ml.train.config import TrainConfig, add_arguments, config_from_args
from ml.train.data import (
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


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Multiplier of the base LR at step ``s``: linear warm-up, then cosine to ``min_ratio``."""

    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
        if cfg.init_from:
            start_weights_from(self.model, cfg.init_from)
        self.warm_started_from: str | None = None
        if cfg.warm_start and not cfg.init_from:
            why = warm_start_mismatch(self.model, cfg.warm_start)
            if why is None:
                start_weights_from(self.model, cfg.warm_start)
                self.warm_started_from = str(cfg.warm_start)
                log.info("warm start from %s", cfg.warm_start)
            else:
                log.info("no warm start from %s: %s; starting from %s", cfg.warm_start, why,
                         "the pretrained backbone")
        if cfg.freeze_bn:
            freeze_batchnorm(self.model)
        self.split: LiteSplit | None = None
        self.bank: FeatureBank | None = None
        self.val_bank: FeatureBank | None = None
        if cfg.cached_views > 0:
            cut = cfg.freeze_blocks or 11
            self.split = LiteSplit(self.model, cut)
            freeze_early_blocks(self.model, cut)
        else:
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
        self.vae: VaeHead | None = None
        if cfg.vae:
            if cfg.cached_views > 0:
                raise ValueError("the VAE head needs end-to-end training (cached_views = 0)")
            self.vae = VaeHead(self.model.dim, latent=cfg.vae_latent).to(self.device)

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
        self.policy = AugmentPolicy(
            self.image_size, probs=dict(cfg.augment), crop_scale=(cfg.crop_min_scale, 1.0)
        )
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
        if self.vae is not None:
            groups.append({"params": list(self.vae.parameters()), "lr": cfg.lr_head, "name": "vae"})
        return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay)

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
        labels = self.label_tensor[list(idx)].to(self.device)
        attrs = self.attr_codes[list(idx)].to(self.device)
        if self.bank is not None and self.split is not None:
            rng = random.Random(f"{self.cfg.seed}/{epoch}/{step}/view")
            x = self.bank.gather(idx, rng).to(self.device)
            forward = self.split.suffix
        else:
            x = self.batch_maker.make(idx, epoch=epoch, step=step).to(self.device)
            forward = self.model
        if self.cpu:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        ):
            emb = forward(x)
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
        if self.vae is not None:
            vl, vae_terms = vae_loss(self.vae, emb, x, beta=self.cfg.vae_beta)
            terms.update({"vae": float(vl.detach()), **vae_terms})
            loss = loss + self.cfg.vae_weight * vl
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

    @torch.no_grad()
    def _embed_bank(self, bank: FeatureBank, batch_size: int = 128) -> np.ndarray:
        """Embeddings ``[n, dim]`` of a one-view bank through the trainable suffix."""
        assert self.split is not None
        self.model.eval()
        out = []
        for start in range(0, bank.features.shape[0], batch_size):
            h = bank.features[start : start + batch_size].float().to(self.device)
            if self.cpu:
                h = h.contiguous(memory_format=torch.channels_last)
            out.append(self.split.suffix(h).cpu().numpy())
        self.model.train()
        return np.concatenate(out)

    def _cache_key(self, views: Sequence[int], val: Sequence[TrainItem]) -> str:
        """Everything the trunk cache depends on, hashed."""
        cfg = self.cfg
        parts = {
            "items": [(str(it.path), it.role) for it in self.train_items],
            "val": [str(it.path) for it in val],
            "views": list(views),
            "model": self.model.config,
            "cut": self.split.cut if self.split else None,
            "augment": self.policy.probs,
            "crop": self.policy.crop_scale,
            "seed": cfg.seed,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _build_banks(self) -> None:
        """Trunk caches: augmented views of the training items, one clean view for val."""
        assert self.split is not None
        cfg = self.cfg
        views = [
            cfg.catalogue_views if it.role == CATALOGUE else cfg.cached_views
            for it in self.train_items
        ]
        val = [*self.catalogue_items, *self._known_val()]
        key = self._cache_key(views, val)
        path = Path(cfg.trunk_cache) if cfg.trunk_cache else None
        if path is not None and path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("key") == key:
                self.bank = FeatureBank.from_state(state["train"])
                self.val_bank = FeatureBank.from_state(state["val"]) if state["val"] else None
                log.info("trunk cache reused from %s", path)
                return
            log.info("trunk cache %s is for other inputs: rebuilding", path)
        opts: dict[str, Any] = {
            "device": self.device,
            "channels_last": self.cpu,
            "progress": cfg.progress,
        }
        self.bank = FeatureBank(self.split, views, self.batch_maker.make_views, **opts)
        log.info(
            "trunk cache: %d views, %.0f MB, %.1f s (%.1f img/s)",
            sum(views),
            self.bank.nbytes / 2**20,
            self.bank.seconds,
            sum(views) / max(self.bank.seconds, 1e-9),
        )
        if self.val_items:

            def clean(idx: Sequence[int], _views: Sequence[int]) -> torch.Tensor:
                images = [self.cache.get(val[i].path) for i in idx]
                return eval_tensor(
                    images, self.image_size, self.model.normalisation, self.model.resize_mode
                )

            self.val_bank = FeatureBank(self.split, [1] * len(val), clean, **opts)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            val_state = self.val_bank.state() if self.val_bank else None
            torch.save({"key": key, "train": self.bank.state(), "val": val_state}, path)

    def _known_val(self) -> list[TrainItem]:
        """Validation photos whose label is in training (others cannot be retrieved)."""
        return [it for it in self.val_items if it.label in self.label_index]

    def validate(self) -> dict[str, float]:
        """Photo -> catalogue metrics on the validation photos (empty dict without them)."""
        if not self.val_items or not self.catalogue_items:
            return {}
        known = self._known_val()
        if self.val_bank is not None:
            emb = self._embed_bank(self.val_bank)
            gallery, queries = emb[: len(self.catalogue_items)], emb[len(self.catalogue_items) :]
        else:
            gallery = self.embed_items(self.catalogue_items)
            queries = self.embed_items(known)
        g_labels = np.array([self.label_index[it.label] for it in self.catalogue_items])
        q_labels = np.array([self.label_index[it.label] for it in known])
        rep = evaluate_embeddings(gallery, g_labels, queries, q_labels)
        return {"val_r1": rep.recall_at_1, "val_r4": rep.recall_at_4, "val_map_r": rep.map_at_r}

    # ----- the loop ---------------------------------------------------------------------------

    def _epochs_within_budget(
        self, epoch: int, planned: int, elapsed_s: float, last_epoch_s: float
    ) -> int:
        """How many epochs fit in ``max_minutes`` at the latest epoch's pace (training and
        validation), at most ``epochs``: a budget shortens the schedule instead of cutting it
        off at a high learning rate, and gives epochs back when a busy machine becomes quiet
        again. A schedule under way keeps at least its next epoch (to reach its floor)."""
        assert self.cfg.max_minutes
        left = self.cfg.max_minutes * 60 - elapsed_s
        fits = epoch + int(left // max(last_epoch_s, 1e-9))
        return max(min(planned, epoch + 1), min(self.cfg.epochs, fits))

    def _replan_schedule(self, total_steps: int) -> None:
        warmup = int(self.cfg.warmup_epochs * len(self.sampler))
        plan = lr_lambda(total_steps, warmup, self.cfg.min_lr_ratio)
        self.scheduler.lr_lambdas = [plan for _ in self.scheduler.lr_lambdas]

    def fit(self, on_step: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Train; ``on_step`` (optional) gets progress after every optimiser step
        (``event="step"``: epoch, step, loss, eta_s...) and every epoch (``event="epoch"``: the
        history row). Returning False stops the run at once and sets ``self.cancelled``."""
        cfg = self.cfg
        self.cancelled = False
        t0 = time.perf_counter()
        n_cached = self.cache.warm(it.path for it in [*self.train_items, *self.val_items])
        log.info("cached %d images in %.1f s", n_cached, time.perf_counter() - t0)
        self.batch_maker = BatchMaker(
            self.train_items,
            self.cache,
            self.policy,
            self.model.normalisation,
            seed=cfg.seed,
            resize=self.model.resize_mode,
        )
        if self.split is not None:
            self._build_banks()
        history: list[dict[str, Any]] = []
        best, best_epoch, stale, kept_epoch = -1.0, -1, 0, -1
        steps_per_epoch = len(self.sampler)
        total_steps = cfg.epochs * steps_per_epoch
        done_steps, train_seconds, images_seen = 0, 0.0, 0
        base = self.validate()
        if base:
            log.info("epoch 0 (pretrained) %s", _fmt(base))
            history.append({"epoch": 0, **base})
        self.model.train()
        planned_epochs = cfg.epochs
        epoch = 0
        while epoch < planned_epochs:
            epoch += 1
            self.sampler.set_epoch(epoch)
            sums: dict[str, float] = {}
            bar = tqdm(
                self.sampler,
                total=steps_per_epoch,
                desc=f"epoch {epoch}/{planned_epochs}",
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
                if (
                    on_step is not None
                    and on_step(
                        {
                            "event": "step",
                            "epoch": epoch,
                            "epochs": planned_epochs,
                            "step": step + 1,
                            "steps_per_epoch": steps_per_epoch,
                            "done_steps": done_steps,
                            "total_steps": total_steps,
                            "loss": terms["loss"],
                            "img_per_s": rate,
                            "eta_s": eta,
                        }
                    )
                    is False
                ):
                    self.cancelled = True
                    break
            if self.cancelled:
                log.info("cancelled at epoch %d step %d", epoch, step + 1)
                break
            train_seconds += time.perf_counter() - t_epoch
            row: dict[str, Any] = {"epoch": epoch, "step": done_steps}
            row.update({k: v / steps_per_epoch for k, v in sums.items()})
            row.update({"img_per_s": images_seen / train_seconds, "train_s": train_seconds})
            row.update(self.validate())
            history.append(row)
            if on_step is not None and on_step({"event": "epoch", **row}) is False:
                self.cancelled = True
            log.info("epoch %d %s", epoch, _fmt(row))
            # Without validation photos every epoch is "best": the last one is kept.
            score = row.get("val_r1", float(epoch))
            if score > best:
                best, best_epoch, stale = score, epoch, 0
            else:
                stale += 1
            if stale == 0 or cfg.select == "last":
                self.save(self.out / "model.pt", row)
                kept_epoch = epoch
            (self.out / "history.json").write_text(json.dumps(history, indent=1))
            if self.cancelled:
                break
            if self.val_items and cfg.select == "best" and stale >= cfg.patience:
                log.info("early stop: no val improvement for %d epochs", stale)
                break
            if cfg.max_minutes and (time.perf_counter() - t0) / 60 > cfg.max_minutes:
                log.info("stopping: time budget of %.1f min reached", cfg.max_minutes)
                break
            if cfg.max_minutes and epoch < cfg.epochs:
                now = time.perf_counter()
                fitted = self._epochs_within_budget(epoch, planned_epochs, now - t0,
                                                    now - t_epoch)
                if fitted != planned_epochs:
                    log.info("time budget of %.1f min: the schedule goes from %d to %d epochs "
                             "(the cosine still ends at its floor)", cfg.max_minutes,
                             planned_epochs, fitted)
                    planned_epochs = fitted
                    total_steps = planned_epochs * steps_per_epoch
                    self._replan_schedule(total_steps)
        summary = {
            "best_epoch": best_epoch,
            "best_val_r1": best,
            "kept_epoch": kept_epoch,
            "wall_s": time.perf_counter() - t0,
        }
        (self.out / "history.json").write_text(json.dumps(history + [summary], indent=1))
        log.info("done: best epoch %d, kept epoch %d, wall %.0f s",
                 best_epoch, kept_epoch, summary["wall_s"])
        return history

    def save(self, path: Path, metrics: dict[str, Any]) -> None:
        train_cfg = asdict(self.cfg)
        train_cfg["attributes"] = self.attr_names
        train_cfg["warm_started_from"] = self.warm_started_from
        config = {"train": train_cfg, "labels": len(self.labels)}
        extra = {}
        if isinstance(self.heads, AttributeHeads):
            # Kept for re-ranking (attribute agreement, ml.rerank.attributes).
            extra[ATTRIBUTE_HEADS_KEY] = {
                "names": list(self.heads.names),
                "values": {n: list(self.attr_vocab[n]) for n in self.heads.names},
                "weights": {n: w.detach().cpu() for n, w in
                            zip(self.heads.names, self.heads.weights, strict=True)},
                "scale": float(self.heads.scale),
            }
        save_checkpoint(path, self.model, config, metrics, extra=extra)


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _fmt(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


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
