"""Settings read from the environment refuse values the code cannot use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import django; django.setup(); "
        "from django.conf import settings; print(settings.FUSION_STRATEGY)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.config.settings",
             "DJANGO_SECRET_KEY": "test", **env},
    )


def test_fusion_strategy_comes_from_the_environment() -> None:
    done = _load_settings(SKULENS_FUSION="best")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "best"


def test_unknown_fusion_strategy_is_refused_with_the_choices() -> None:
    done = _load_settings(SKULENS_FUSION="average")
    assert done.returncode != 0
    expected = "SKULENS_FUSION must be one of best, mean_top_m, query_mean, not 'average'"
    assert expected in done.stderr


def test_undo_window_is_refused_when_negative() -> None:
    done = _load_settings(SKULENS_UNDO_WINDOW_S="-5")
    assert done.returncode != 0
    assert "SKULENS_UNDO_WINDOW_S must be 0 (off) or a number of seconds" in done.stderr
    assert _load_settings(SKULENS_UNDO_WINDOW_S="0").returncode == 0


def test_a_relative_var_dir_is_made_absolute(tmp_path: Path) -> None:
    """Training CSVs list media paths and are read from their own folder: a relative var
    directory (SKULENS_VAR_DIR=var/sim) once made every in-app run fail on its first image."""
    code = ("import django; django.setup(); from django.conf import settings; "
            "print(settings.VAR_DIR); print(settings.MEDIA_ROOT)")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.config.settings",
             "DJANGO_SECRET_KEY": "test", "SKULENS_VAR_DIR": "var/sim", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    var_dir, media_root = done.stdout.split()
    assert var_dir == str(tmp_path.resolve() / "var" / "sim")
    assert Path(media_root).is_absolute() and media_root.startswith(var_dir)
