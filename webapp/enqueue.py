"""Sending a task after commit, by the name it is registered under.

A service names the task it needs (``enqueue_on_commit("learning.train_model", run.pk)``)
instead of importing its tasks module: tasks import the services they run, never the other
way round, so an app's services and tasks form no import circle. Each app's
``AppConfig.ready`` imports its tasks module, so every name is registered in every process.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from django.db import transaction

from webapp.config.celery import app

logger = logging.getLogger(__name__)


def registered_task(task: Task | str) -> Task:
    """The task itself, or the one registered under this name (KeyError: no such task)."""
    return app.tasks[task] if isinstance(task, str) else task


def enqueue_now(task: Task | str, *args: Any) -> bool:
    """Send `task(*args)`; False (logged) when the broker cannot be reached."""
    task = registered_task(task)
    if task.app.conf.task_always_eager:  # debugging and tests: run here, errors propagate
        task.apply_async(args)
        return True
    try:
        task.apply_async(args, retry=True, retry_policy={"max_retries": 2,
                                                         "interval_start": 0.2,
                                                         "interval_step": 0.5})
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise many kinds; the sweeper resends
        logger.warning("could not send %s%s (%s: %s); the sweeper will send it again",
                       task.name, args, type(exc).__name__, exc)
        return False
    return True


def enqueue_on_commit(task: Task | str, *args: Any) -> None:
    """Send the task once the current transaction commits; a broker failure loses nothing.
    A name is looked up now, so a task that does not exist fails inside the transaction."""
    task = registered_task(task)
    transaction.on_commit(lambda: enqueue_now(task, *args))
