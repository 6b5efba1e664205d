"""Metric-learning training and ``python -m ml train``.

One concept a module: :mod:`.config` (:class:`TrainConfig` and the command line), :mod:`.data`
(training CSVs, hold-out split, batches), :mod:`.cache` (cached-trunk training: the trunk
banks), :mod:`.schedule` (the cosine learning-rate schedule and the time budget that re-plans
it), :mod:`.weights` (starting weights, warm starts, frozen early blocks), :mod:`.heads` (the
multitask terms beside the metric loss), :mod:`.selection` (the epoch kept, early stopping),
:mod:`.validation` (photo -> catalogue Recall@k during training), :mod:`.trainer`
(:class:`Trainer`, the loop, ``python -m ml train``). Callers import from here:
``from ml.train import Trainer, TrainConfig``.
"""

from ml.train.config import TrainConfig, add_arguments, config_from_args
from ml.train.schedule import lr_lambda
from ml.train.trainer import Trainer, run
from ml.train.weights import freeze_early_blocks

__all__ = [
    "TrainConfig",
    "Trainer",
    "add_arguments",
    "config_from_args",
    "freeze_early_blocks",
    "lr_lambda",
    "run",
]
