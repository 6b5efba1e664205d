"""ml/ is a plain library: importing every module of it must not import Django or Celery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import importlib, pkgutil, sys
import ml
names = sorted(m.name for m in pkgutil.walk_packages(ml.__path__, "ml."))
names = [n for n in names if n != "ml.__main__"]  # runs the CLI when imported
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("django", "celery", "rest_framework"))
assert not bad, bad
print(len(names), "modules")
"""


def test_ml_imports_no_django_or_celery():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[0]) >= 10
