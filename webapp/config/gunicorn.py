"""Gunicorn settings for SKU Lens (`make serve`, and the Procfile's `web`).

Everything can be overridden on the command line or with GUNICORN_CMD_ARGS; the usual knobs
come from the environment: WEB_CONCURRENCY (worker processes), SKULENS_WEB_THREADS (threads
per worker), SKULENS_HOST and PORT / SKULENS_PORT (where to listen).
"""

from __future__ import annotations

import os
from pathlib import Path

_root = Path(__file__).resolve().parents[2]
_host = os.environ.get("SKULENS_HOST", "127.0.0.1")
_port = os.environ.get("PORT") or os.environ.get("SKULENS_PORT", "8000")

bind = [f"{_host}:{_port}"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let one worker answer page polls while another request waits on the database.
threads = int(os.environ.get("SKULENS_WEB_THREADS", "4"))
worker_class = "gthread"
# Uploads of 8 large photos on a slow link; the worker itself never runs a model.
timeout = int(os.environ.get("SKULENS_WEB_TIMEOUT_S", "120"))
graceful_timeout = 30
keepalive = 5
# No max_requests recycling: every recycled worker would leave its metrics files behind in
# the multiprocess folder, and each scrape reads them all.
wsgi_app = "webapp.config.wsgi:application"
chdir = str(_root)
accesslog = "-"
# %(M)s: request time in milliseconds, the server time the benchmarks read.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = os.environ.get("SKULENS_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# prometheus-client multiprocess mode (webapp.ops.metrics): every worker writes its samples
# into this folder; settings.py points the workers at the same one.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(
    Path(os.environ.get("SKULENS_VAR_DIR", str(_root / "var"))) / "metrics"
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
Path(_metrics_dir).mkdir(parents=True, exist_ok=True)


def child_exit(server: object, worker: object) -> None:
    """A dead worker's live gauges must not be reported any more."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)  # type: ignore[attr-defined]
