"""The optimiser, its learning-rate schedule and the time budget that re-plans it.

AdamW with separate backbone and head learning rates; linear warm-up, then cosine decay to a
floor over the planned epochs. With a time budget (``max_minutes``) the plan is re-made after
every epoch at the latest epoch's pace, so a budget shortens the schedule instead of cutting
it off at a high learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ml.model import EmbeddingNet


def build_optimizer(
    model: EmbeddingNet,
    extra_groups: Sequence[dict[str, Any]],
    *,
    lr_backbone: float,
    lr_head: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters: the backbone at ``lr_backbone``; the head and the
    pooling's scalars (e.g. GeM's ``p``) at ``lr_head``; then ``extra_groups`` (the multitask
    heads). Groups without trainable parameters are left out."""
    backbone = [p for p in model.backbone_parameters() if p.requires_grad]
    head = [p for p in model.head_parameters() if p.requires_grad]
    pooling = [p for p in model.backbone.parameters() if p.ndim == 0 and p.requires_grad]
    backbone = [p for p in backbone if all(p is not q for q in pooling)]
    groups = [
        {"params": backbone, "lr": lr_backbone, "name": "backbone"},
        {"params": head + pooling, "lr": lr_head, "name": "head"},
    ]
    groups.extend(extra_groups)
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay)


def lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Multiplier of the base LR at step ``s``: linear warm-up, then cosine to ``min_ratio``."""

    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def epochs_within_budget(
    epoch: int,
    planned: int,
    elapsed_s: float,
    last_epoch_s: float,
    *,
    max_minutes: float,
    max_epochs: int,
) -> int:
    """How many epochs fit in ``max_minutes`` at the latest epoch's pace (training and
    validation), at most ``max_epochs``: a budget shortens the schedule instead of cutting it
    off at a high learning rate, and gives epochs back when a busy machine becomes quiet
    again. A schedule under way keeps at least its next epoch (to reach its floor)."""
    left = max_minutes * 60 - elapsed_s
    fits = epoch + int(left // max(last_epoch_s, 1e-9))
    return max(min(planned, epoch + 1), min(max_epochs, fits))


class CosineSchedule:
    """The planned epochs and the ``LambdaLR`` that follows them, one step per batch.

    Args:
        optimizer: whose parameter groups' learning rates the schedule scales.
        epochs: epochs planned at the start (the most a re-plan may give back).
        steps_per_epoch: optimiser steps an epoch.
        warmup_epochs: epochs of linear warm-up (may be fractional).
        min_ratio: the floor, as a fraction of each base learning rate.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        steps_per_epoch: int,
        warmup_epochs: float,
        min_ratio: float,
    ) -> None:
        self.max_epochs = epochs
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.warmup_steps = int(warmup_epochs * steps_per_epoch)
        self.min_ratio = min_ratio
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(self.total_steps, self.warmup_steps, min_ratio)
        )

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the planned epochs."""
        return self.epochs * self.steps_per_epoch

    def fit_budget(
        self, epoch: int, *, elapsed_s: float, last_epoch_s: float, max_minutes: float
    ) -> bool:
        """Re-plan after ``epoch`` to the epochs that fit the budget (:func:`epochs_within_budget`);
        the cosine then ends at its floor on the new last step. True when the plan changed."""
        fitted = epochs_within_budget(
            epoch, self.epochs, elapsed_s, last_epoch_s,
            max_minutes=max_minutes, max_epochs=self.max_epochs,
        )
        if fitted == self.epochs:
            return False
        self.epochs = fitted
        plan = lr_lambda(self.total_steps, self.warmup_steps, self.min_ratio)
        self.scheduler.lr_lambdas = [plan for _ in self.scheduler.lr_lambdas]
        return True


__all__ = ["CosineSchedule", "build_optimizer", "epochs_within_budget", "lr_lambda"]
