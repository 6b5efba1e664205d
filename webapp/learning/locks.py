"""One index publish at a time, across processes and hosts.

A catalogue sync, the hourly beat sync and a promotion may all publish at once. Unserialised,
the last to commit would win: a sync started before a promotion could re-activate an index of
the old model, or flip reference embeddings back to it while the promotion builds. PostgreSQL
serialises them with a session advisory lock (released by the server if the worker dies);
SQLite, a single-host database, with an exclusive file lock beside the index versions.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

# Any constant shared by every process of one deployment: "SKUL" in ASCII.
PUBLISH_LOCK_KEY = 0x534B554C


@contextmanager
def index_publish_lock() -> Iterator[None]:
    """Block until no other process or thread is publishing, then hold the lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [PUBLISH_LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [PUBLISH_LOCK_KEY])
        return
    settings.INDEX_DIR.mkdir(parents=True, exist_ok=True)
    with (settings.INDEX_DIR / ".publish.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
