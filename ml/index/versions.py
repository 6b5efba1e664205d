"""Versioned index directories under one root: ``root/<name>/`` never overwritten, and
``root/CURRENT`` naming the live one, switched with one atomic rename.

A file-only registry for scripts and tests; an application with a database records its
versions there and uses :meth:`VectorIndex.save` / :meth:`VectorIndex.load` directly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ml.index.core import VectorIndex
from ml.index.storage import META_FILE

CURRENT_FILE = "CURRENT"


def new_version_name() -> str:
    """Sortable, unique-enough version name, e.g. ``v20261121T150102123456``."""
    return time.strftime("v%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time_ns() % 10**9 // 1000:06d}"


def save_version(
    root: str | Path, index: VectorIndex, meta: dict[str, Any], *, name: str | None = None
) -> str:
    """Write ``root/<name>/`` atomically; never overwrites an existing version.

    Returns:
        The version directory name.

    Raises:
        FileExistsError: ``root/<name>`` already exists.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = name or new_version_name()
    if "/" in name or name.startswith("."):
        raise ValueError(f"invalid version name {name!r}")
    target = root / name
    if target.exists():
        raise FileExistsError(f"index version {name} already exists in {root}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        index._write_files(tmp, {**meta, "version": name})
        if target.exists():  # lost a race with another writer
            raise FileExistsError(f"index version {name} already exists in {root}")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name


def load_version(root: str | Path, name: str | None = None) -> tuple[VectorIndex, dict[str, Any]]:
    """Load ``root/<name>/``, or the version named by ``root/CURRENT`` when ``name`` is None."""
    root = Path(root)
    name = name or current_version(root)
    if name is None:
        raise FileNotFoundError(f"no current index version in {root}")
    return VectorIndex.load(root / name)


def list_versions(root: str | Path) -> list[str]:
    """Complete version directories under ``root``, oldest first (temp dirs excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file()
    )


def set_current(root: str | Path, name: str) -> None:
    """Point ``root/CURRENT`` at version ``name`` with one atomic rename (the index swap)."""
    root = Path(root)
    if not (root / name / META_FILE).is_file():
        raise FileNotFoundError(f"index version {name} not found in {root}")
    fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", dir=root)
    with os.fdopen(fd, "w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT_FILE)


def current_version(root: str | Path) -> str | None:
    """The version named by ``root/CURRENT``, or None."""
    path = Path(root) / CURRENT_FILE
    if not path.is_file():
        return None
    return path.read_text().strip() or None

