"""Training runs: ml.train's Trainer driven with plain options (webapp.learning.training)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ml.augment import DEFAULT_PROBS, AugmentPolicy
from ml.train import TrainConfig, Trainer


def train_option_names() -> frozenset[str]:
    """The options a run may set (TrainConfig's fields)."""
    return frozenset(f.name for f in dataclasses.fields(TrainConfig))


def train_option_default(name: str) -> Any:
    """TrainConfig's default for option `name`."""
    return getattr(TrainConfig, name)


def train_config(values: Mapping[str, Any]) -> TrainConfig:
    """The run's configuration; TypeError or ValueError for options it refuses."""
    return TrainConfig(**values)


def augment_probabilities(cause_weights: Mapping[str, float]) -> dict[str, float]:
    """Transform probabilities aimed at the tagged causes (QA's counts); the defaults when
    nothing is tagged."""
    if cause_weights:
        return AugmentPolicy.from_cause_weights(dict(cause_weights)).probs
    return dict(DEFAULT_PROBS)


def train(
    cfg: TrainConfig, *, on_step: Callable[[dict[str, Any]], bool], note: Callable[[str], Any]
) -> bool:
    """Train one model into ``cfg.out`` (``model.pt``, ``history.json``), telling `note` the
    augmentation and the starting point first; `on_step` gets each step's and epoch's figures
    and returns False to stop. Returns True when the run was cancelled that way."""
    trainer = Trainer(cfg)
    note(f"augmentation: {trainer.policy.describe()}")
    note(f"starting from {trainer.warm_started_from or cfg.backbone + ' (pretrained)'}")
    trainer.fit(on_step=on_step)
    return bool(trainer.cancelled)
