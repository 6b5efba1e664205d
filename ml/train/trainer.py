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
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ml.augment import AugmentPolicy
from ml.embed import configure_threads, resolve_device
from ml.losses import build_criterion
from ml.model import build_model, freeze_batchnorm, save_checkpoint
from ml.sampling import CATALOGUE, PKBatchSampler
from ml.train.cache import FeatureBank, LiteSplit, build_banks, embed_bank, trunk_cache_key
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
from ml.train.heads import AuxiliaryHeads
from ml.train.schedule import CosineSchedule, build_optimizer, lr_lambda
from ml.train.selection import EpochSelection
from ml.train.validation import embed_items, retrieval_metrics
from ml.train.weights import (
    freeze_early_blocks,
    start_weights_from,
    warm_start,
    warm_start_mismatch,
)

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
            self.warm_started_from = warm_start(self.model, cfg.warm_start)
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
        self.auxiliary = AuxiliaryHeads(
            cfg, self.model.dim, self.attr_names, self.attr_vocab, self.device
        )

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
        self.optimizer = build_optimizer(
            self.model, self.auxiliary.param_groups(cfg.lr_head), lr_backbone=cfg.lr_backbone,
            lr_head=cfg.lr_head, weight_decay=cfg.weight_decay,
        )
        self.schedule = CosineSchedule(
            self.optimizer,
            epochs=cfg.epochs,
            steps_per_epoch=len(self.sampler),
            warmup_epochs=cfg.warmup_epochs,
            min_ratio=cfg.min_lr_ratio,
        )
        self.scheduler = self.schedule.scheduler

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
        loss = self.auxiliary.add_terms(loss, emb, labels, attrs, x, terms)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        terms["loss"] = float(loss.detach())
        return terms

    # ----- validation -----------------------------------------------------------------------

    def embed_items(self, items: Sequence[TrainItem], batch_size: int = 64) -> np.ndarray:
        """``[n, dim]`` float32 embeddings with the deterministic evaluation preprocessing."""
        return embed_items(self.model, self.cache, items, self.device, batch_size=batch_size)

    def _build_banks(self) -> None:
        """Trunk caches: augmented views of the training items, one clean view for val."""
        assert self.split is not None
        cfg = self.cfg
        views = [
            cfg.catalogue_views if it.role == CATALOGUE else cfg.cached_views
            for it in self.train_items
        ]
        val = [*self.catalogue_items, *self._known_val()]
        key = trunk_cache_key({
            "items": [(str(it.path), it.role) for it in self.train_items],
            "val": [str(it.path) for it in val],
            "views": list(views),
            "model": self.model.config,
            "cut": self.split.cut,
            "augment": self.policy.probs,
            "crop": self.policy.crop_scale,
            "seed": cfg.seed,
        })

        def clean(idx: Sequence[int], _views: Sequence[int]) -> torch.Tensor:
            images = [self.cache.get(val[i].path) for i in idx]
            return eval_tensor(
                images, self.image_size, self.model.normalisation, self.model.resize_mode
            )

        self.bank, self.val_bank = build_banks(
            self.split, views, self.batch_maker.make_views,
            val_views=[1] * len(val), make_val=clean if self.val_items else None, key=key,
            path=Path(cfg.trunk_cache) if cfg.trunk_cache else None,
            device=self.device, channels_last=self.cpu, progress=cfg.progress,
        )

    def _known_val(self) -> list[TrainItem]:
        """Validation photos whose label is in training (others cannot be retrieved)."""
        return [it for it in self.val_items if it.label in self.label_index]

    def validate(self) -> dict[str, float]:
        """Photo -> catalogue metrics on the validation photos (empty dict without them)."""
        if not self.val_items or not self.catalogue_items:
            return {}
        known = self._known_val()
        if self.val_bank is not None:
            assert self.split is not None
            emb = embed_bank(self.split, self.val_bank, self.device, channels_last=self.cpu)
            gallery, queries = emb[: len(self.catalogue_items)], emb[len(self.catalogue_items) :]
        else:
            gallery = self.embed_items(self.catalogue_items)
            queries = self.embed_items(known)
        g_labels = np.array([self.label_index[it.label] for it in self.catalogue_items])
        q_labels = np.array([self.label_index[it.label] for it in known])
        return retrieval_metrics(gallery, g_labels, queries, q_labels)

    # ----- the loop ---------------------------------------------------------------------------

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
        selection = EpochSelection(cfg.select, cfg.patience, validated=bool(self.val_items))
        steps_per_epoch = len(self.sampler)
        done_steps, train_seconds, images_seen = 0, 0.0, 0
        base = self.validate()
        if base:
            log.info("epoch 0 (pretrained) %s", _fmt(base))
            history.append({"epoch": 0, **base})
        self.model.train()
        schedule = self.schedule
        epoch = 0
        while epoch < schedule.epochs:
            epoch += 1
            self.sampler.set_epoch(epoch)
            sums: dict[str, float] = {}
            bar = tqdm(
                self.sampler,
                total=steps_per_epoch,
                desc=f"epoch {epoch}/{schedule.epochs}",
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
                eta = (schedule.total_steps - done_steps) * elapsed / done_steps
                bar.set_postfix(
                    loss=f"{terms['loss']:.4f}", img_s=f"{rate:.1f}", eta=_hms(eta), refresh=False
                )
                if (
                    on_step is not None
                    and on_step(
                        {
                            "event": "step",
                            "epoch": epoch,
                            "epochs": schedule.epochs,
                            "step": step + 1,
                            "steps_per_epoch": steps_per_epoch,
                            "done_steps": done_steps,
                            "total_steps": schedule.total_steps,
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
            if selection.update(epoch, row):
                self.save(self.out / "model.pt", row)
            (self.out / "history.json").write_text(json.dumps(history, indent=1))
            if self.cancelled:
                break
            if selection.stop_early:
                log.info("early stop: no val improvement for %d epochs", selection.stale)
                break
            if cfg.max_minutes and (time.perf_counter() - t0) / 60 > cfg.max_minutes:
                log.info("stopping: time budget of %.1f min reached", cfg.max_minutes)
                break
            if cfg.max_minutes and epoch < cfg.epochs:
                now, planned = time.perf_counter(), schedule.epochs
                if schedule.fit_budget(epoch, elapsed_s=now - t0, last_epoch_s=now - t_epoch,
                                       max_minutes=cfg.max_minutes):
                    log.info("time budget of %.1f min: the schedule goes from %d to %d epochs "
                             "(the cosine still ends at its floor)", cfg.max_minutes,
                             planned, schedule.epochs)
        summary = {
            "best_epoch": selection.best_epoch,
            "best_val_r1": selection.best,
            "kept_epoch": selection.kept_epoch,
            "wall_s": time.perf_counter() - t0,
        }
        (self.out / "history.json").write_text(json.dumps(history + [summary], indent=1))
        log.info("done: best epoch %d, kept epoch %d, wall %.0f s",
                 selection.best_epoch, selection.kept_epoch, summary["wall_s"])
        return history

    def save(self, path: Path, metrics: dict[str, Any]) -> None:
        train_cfg = asdict(self.cfg)
        train_cfg["attributes"] = self.attr_names
        train_cfg["warm_started_from"] = self.warm_started_from
        config = {"train": train_cfg, "labels": len(self.labels)}
        save_checkpoint(path, self.model, config, metrics, extra=self.auxiliary.checkpoint_extra())


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


__all__ = ["TrainConfig", "Trainer", "add_arguments", "config_from_args", "lr_lambda", "run",
           "warm_start_mismatch"]
