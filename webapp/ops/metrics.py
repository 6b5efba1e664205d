"""Prometheus metrics, summed over every process of a machine (prometheus-client multiprocess).

Gunicorn and Celery both run several processes, so each one writes its samples into files in
``settings.METRICS_DIR`` (``PROMETHEUS_MULTIPROC_DIR``) and a scrape merges them: counters and
histograms add up, and the per-process gauge keeps one series per live process (``pid``
label). What the database and broker know (queue depth, requests by status, the live index and
model) is read at scrape time instead, so it is right whichever process serves the scrape.

Served at ``/metrics`` by the web app, and by a worker on ``SKULENS_WORKER_METRICS_PORT`` where a
machine runs no web process.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.db.models.signals import post_init, post_save
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

if prometheus_values.ValueClass is prometheus_values.MutexValue:  # pragma: no cover
    # Imported before settings set PROMETHEUS_MULTIPROC_DIR: samples would stay in this process.
    logger.warning("prometheus-client is not in multiprocess mode; metrics are per process")

QUEUES = ("gpu", "default")
# Seconds; stages take ~1 ms (search) to ~1 s (detection on a large batch on CPU).
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOTAL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_STAGE_NAME = re.compile(r"^[a-z_]{1,24}$")  # keeps the label set bounded

MATCH_STAGE_SECONDS = Histogram(
    "skulens_match_stage_seconds",
    "Worker time per match stage (load, detect, segment, embed, search, fuse, store).",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
MATCH_SECONDS = Histogram(
    "skulens_match_seconds",
    "Upload to stored candidates, queueing included.",
    buckets=TOTAL_BUCKETS,
)
MATCHES_DONE = Counter("skulens_matches_done_total", "Match requests whose candidates were stored.")
DECISIONS = Counter("skulens_decisions_total", "Appraisers' decisions.", ["outcome"])
WORKER_SERVING = Gauge(
    "skulens_worker_serving_info",
    "1 for the index and model version a worker process last matched with (one per process).",
    ["index_version", "model_version"],
    multiprocess_mode="liveall",
)
_serving: dict[str, tuple[str, str] | None] = {"labels": None}


def _on_match_init(sender: Any, instance: Any, **_: Any) -> None:
    # From __dict__: a queryset that deferred `status` must not cost a query per row.
    instance._metrics_status = instance.__dict__.get("status")


def _on_match_saved(sender: Any, instance: Any, **_: Any) -> None:
    """Count a request once, on the save that moves it to DONE (the worker's result store)."""
    done = instance.Status.DONE
    if instance.status != done or getattr(instance, "_metrics_status", None) == done:
        instance._metrics_status = instance.status
        return
    instance._metrics_status = done
    MATCHES_DONE.inc()
    for stage, ms in (instance.timings_ms or {}).items():
        if _STAGE_NAME.match(stage) and isinstance(ms, int | float):
            MATCH_STAGE_SECONDS.labels(stage).observe(ms / 1000)
    if instance.finished_at and instance.created_at:
        MATCH_SECONDS.observe((instance.finished_at - instance.created_at).total_seconds())
    serving = (instance.index_version or "", instance.model_version or "")
    if _serving["labels"] != serving:
        if _serving["labels"] is not None:
            WORKER_SERVING.labels(*_serving["labels"]).set(0)
        WORKER_SERVING.labels(*serving).set(1)
        _serving["labels"] = serving


def _on_decision_saved(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    if created:
        DECISIONS.labels(instance.outcome).inc()


def connect_signals() -> None:
    from celery.signals import worker_ready

    from webapp.matching.models import Decision, MatchRequest

    post_init.connect(_on_match_init, sender=MatchRequest, dispatch_uid="ops-match-init")
    post_save.connect(_on_match_saved, sender=MatchRequest, dispatch_uid="ops-match-saved")
    post_save.connect(_on_decision_saved, sender=Decision, dispatch_uid="ops-decision-saved")
    worker_ready.connect(_serve_from_worker, dispatch_uid="ops-worker-metrics")
    metrics_dir_prune()


def _serve_from_worker(**_: Any) -> None:
    """On a machine with no web process, a worker answers the scrapes of its machine."""
    port = settings.WORKER_METRICS_PORT
    if not port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=settings.WORKER_METRICS_ADDR, registry=registry())
    except OSError as exc:  # another worker of this machine serves them already
        logger.info("worker metrics not served on port %s: %s", port, exc)
        return
    logger.info("serving this machine's metrics on port %s", port)


def metrics_dir_prune() -> None:
    """Drop the live-gauge files of processes that died without saying so (a killed worker)."""
    for path in glob.glob(os.path.join(settings.METRICS_DIR, "gauge_live*_*.db")):
        try:
            pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
        except ValueError:
            continue
        if not _alive(pid):
            mark_process_dead(pid, str(settings.METRICS_DIR))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----- read at scrape time ----------------------------------------------------------------


def broker_queue_depths(queues: Iterable[str] = QUEUES) -> dict[str, int]:
    """Messages waiting in each Celery queue (Redis or the filesystem transport)."""
    from webapp.config.celery import app

    depths: dict[str, int] = {}
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in queues:
            try:
                _, count, _ = channel.queue_declare(queue=queue, passive=True)
            except Exception:  # noqa: BLE001 - a queue nobody declared yet holds nothing
                count = 0
            depths[queue] = int(count)
    return depths


class StateCollector(Collector):
    """What the database and the broker say now."""

    def collect(self) -> Iterator[Metric]:
        from webapp.learning.models import IndexVersion
        from webapp.matching.models import MatchRequest

        requests = GaugeMetricFamily(
            "skulens_match_requests", "Match requests by status.", labels=["status"]
        )
        counts = dict(
            MatchRequest.objects.values_list("status").annotate(n=Count("id")).order_by()
        )
        for status in MatchRequest.Status.values:
            requests.add_metric([status], counts.get(status, 0))
        yield requests

        depth = GaugeMetricFamily(
            "skulens_queue_depth", "Celery messages waiting per queue.", labels=["queue"]
        )
        up = GaugeMetricFamily("skulens_broker_up", "1 if the broker answered this scrape.")
        try:
            for queue, count in broker_queue_depths().items():
                depth.add_metric([queue], count)
            up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001 - the scrape must still answer
            logger.warning("broker unavailable for metrics: %s", exc)
            up.add_metric([], 0)
        yield depth
        yield up

        live = GaugeMetricFamily(
            "skulens_live_index_info",
            "1 for the active index version and the model that goes with it.",
            labels=["index_version", "model_version", "model_ref"],
        )
        vectors = GaugeMetricFamily("skulens_live_index_vectors", "Vectors in the active index.")
        version = IndexVersion.objects.filter(is_active=True).first()
        if version is not None:
            live.add_metric([version.name, version.model_version, version.model_ref], 1)
            vectors.add_metric([], version.vector_count)
        yield live
        yield vectors


def registry() -> CollectorRegistry:
    """A fresh registry for one scrape: every process's samples plus the current state."""
    scrape = CollectorRegistry()
    MultiProcessCollector(scrape, path=str(settings.METRICS_DIR))
    scrape.register(StateCollector())
    return scrape


def exposition() -> bytes:
    return generate_latest(registry())
