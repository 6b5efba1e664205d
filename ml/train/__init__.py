"""Metric-learning training and ``python -m ml train``.

One concept a module: :mod:`.config` (:class:`TrainConfig` and the command line), :mod:`.data`
(training CSVs, hold-out split, batches), :mod:`.cache` (cached-trunk training),
:mod:`.schedule` (learning-rate schedule, seeding, layer freezing, warm starts),
:mod:`.trainer` (:class:`Trainer`). Callers import from here:
``from ml.train import Trainer, TrainConfig``.
"""

from ml.train.config import TrainConfig, add_arguments, config_from_args
from ml.train.trainer import Trainer, freeze_early_blocks, lr_lambda, run

__all__ = [
    "TrainConfig",
    "Trainer",
    "add_arguments",
    "config_from_args",
    "freeze_early_blocks",
    "lr_lambda",
    "run",
]
