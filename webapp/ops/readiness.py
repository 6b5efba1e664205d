"""Readiness checks: can this deployment take a match request now?

* database: a round trip;
* broker: a connection (Redis, or the filesystem transport's folders);
* index: an active, ready index version whose files a worker can load: in this machine's index
  directory or complete in the artefact store (webapp.learning.artifacts). A worker process
  that has loaded it says so (``loaded``); web processes never load the index.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connection

BROKER_TIMEOUT_S = 2.0


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result: dict[str, Any] = {"ok": True, **check()}
    except Exception as exc:  # noqa: BLE001 - reported, the probe decides
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _broker() -> dict[str, Any]:
    from webapp.config.celery import app

    with app.connection_for_write() as broker:
        broker.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, timeout=BROKER_TIMEOUT_S
        )
        return {"transport": broker.transport.driver_type}


class NotReady(RuntimeError):
    pass


def _index() -> dict[str, Any]:
    from webapp import ml_gateway
    from webapp.learning.artifacts import index_manifest
    from webapp.learning.selectors import active_index_version

    version = active_index_version()
    if version is None:
        raise NotReady("no index has been built yet (manage.py build_index)")
    if version.status != version.Status.READY:
        raise NotReady(f"index {version.name} is {version.status}")
    if ml_gateway.index_path(version.name).is_dir():
        source = "local"
    elif index_manifest(version.name) is not None:
        source = "store"
    else:
        raise NotReady(f"index {version.name} is neither local nor in the artefact store")
    loaded = ml_gateway.active_index.loaded_name() == version.name
    return {"version": version.name, "vectors": version.vector_count, "source": source,
            "loaded": loaded}


def checks() -> dict[str, dict[str, Any]]:
    return {"database": _timed(_database), "broker": _timed(_broker), "index": _timed(_index)}
