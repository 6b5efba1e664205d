"""`manage.py live_model`: one line, what matching loads now (a checkpoint path or a backbone
name), so that `python -m ml evaluate --model "$(manage.py live_model)"` evaluates it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from webapp.learning.selectors import live_model_ref


class Command(BaseCommand):
    help = "Print the live model's checkpoint path or backbone name."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(live_model_ref())
