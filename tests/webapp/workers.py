"""Start real Celery worker processes against the test database, for the worker tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
TEST_MATCH_STALE_S = 6.0


def redis_url_or_skip() -> str:
    import redis

    url = os.environ.get("SKULENS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
    except redis.exceptions.ConnectionError:
        message = f"Redis is not running at {url} (make test starts it)"
        if os.environ.get("SKULENS_REQUIRE_REDIS"):
            pytest.fail(message)
        pytest.skip(message)
    client.flushdb()
    return url


def test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("postgresql"):
        return (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        )
    return f"sqlite:///{db['NAME']}"


class Worker:
    """One `celery worker` process, consuming the gpu queue like production (solo pool)."""

    def __init__(self, name: str, broker_url: str, log_dir: Path, *, queues: str = "gpu",
                 extra_args: tuple[str, ...] = (), **env: str) -> None:
        self.log_path = log_dir / f"worker-{name}.log"
        self.environment = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": broker_url,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "SKULENS_INDEX_DIR": str(settings.INDEX_DIR),
            "CELERY_VISIBILITY_TIMEOUT_S": "2",
            # A dead worker's rows go stale in seconds, not a minute (webapp.sweeper).
            "SKULENS_MATCH_STALE_S": str(TEST_MATCH_STALE_S),
            **env,
        }
        self.queues = queues
        self.extra_args = extra_args
        self.name = name
        self.queues = queues
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240) -> Worker:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "webapp.config", "worker", "-Q", self.queues,
             "--pool=solo", "--concurrency=1", "--prefetch-multiplier=1",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"{self.name}@%h", "--loglevel=INFO", *self.extra_args],
            cwd=ROOT, env=self.environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"worker {self.name} did not start:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole worker: no chance to ack, requeue or clean up."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def terminate(self) -> None:
        """SIGTERM: Celery's warm shutdown (finish the current task, then exit)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
