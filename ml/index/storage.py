"""Atomic save and load of a :class:`ml.index.VectorIndex`: ``index.faiss`` + ``meta.json``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Self

import faiss

from ml.index.base import DEFAULT_NPROBE, FaissIndexBase

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
FORMAT = 1


class IndexCorruptError(ValueError):
    """A saved index is missing files or does not match its metadata."""


class IndexStorage(FaissIndexBase):
    """Persistence of :class:`ml.index.VectorIndex`."""

    def save(self, directory: str | Path, *, meta: dict[str, Any]) -> None:
        """Write ``index.faiss`` + ``meta.json`` into ``directory`` without a torn state.

        Files go to a temporary sibling directory first, which is then renamed into place.
        An existing ``directory`` is moved aside and deleted only after the new one is in
        place, so a failure at any point leaves the old index loadable.
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            self._write_files(tmp, meta)
            if directory.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
                os.replace(directory, old / "prev")
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _write_files(self, directory: Path, meta: dict[str, Any]) -> None:
        full_meta = {
            **meta,
            "count": self.ntotal,
            "dim": self.dim,
            "kind": self.kind,
            "nprobe": self.nprobe,
            "format": FORMAT,
        }
        faiss.write_index(self._index, str(directory / INDEX_FILE))
        meta_path = directory / META_FILE
        meta_path.write_text(json.dumps(full_meta, indent=2, sort_keys=True, default=str))
        for path in (directory / INDEX_FILE, meta_path):
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())

    @classmethod
    def load(cls, directory: str | Path) -> tuple[Self, dict[str, Any]]:
        """Load a directory written by :meth:`save`; verifies the vector count against meta.

        Raises:
            IndexCorruptError: missing files or ``ntotal != meta["count"]``.
        """
        directory = Path(directory)
        index_path, meta_path = directory / INDEX_FILE, directory / META_FILE
        if not index_path.is_file() or not meta_path.is_file():
            raise IndexCorruptError(f"{directory}: missing {INDEX_FILE} or {META_FILE}")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise IndexCorruptError(f"{meta_path}: invalid JSON ({exc})") from exc
        try:
            raw = faiss.read_index(str(index_path))
        except RuntimeError as exc:
            raise IndexCorruptError(f"{index_path}: unreadable ({exc})") from exc
        index = cls(raw, nprobe=int(meta.get("nprobe", DEFAULT_NPROBE)))
        if index.ntotal != int(meta.get("count", -1)):
            raise IndexCorruptError(
                f"{directory}: index holds {index.ntotal} vectors, meta says {meta.get('count')}"
            )
        if "dim" in meta and int(meta["dim"]) != index.dim:
            raise IndexCorruptError(f"{directory}: dim {index.dim} != meta dim {meta['dim']}")
        return index, meta

