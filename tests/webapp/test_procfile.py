"""`make run`'s process list: scripts/run.sh starts the Procfile under honcho on the embedded
broker (kombu's filesystem transport); web (gunicorn), the gpu and default workers and beat
all come up, a match goes through, beat's schedule reaches a worker, and /metrics sums what
the worker process recorded."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from kombu import Connection

from tests.webapp.conftest import PASSWORD, demo_photo_upload
from tests.webapp.workers import ROOT
from tests.webapp.workers import test_database_url as database_url
from webapp.config.celery import app as celery_app
from webapp.matching.models import MatchRequest
from webapp.matching.tasks import recalibrate_thresholds

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{log.read_text(errors='replace')[-5000:]}")


class Honcho:
    def __init__(self, var_dir: Path, port: int) -> None:
        self.var_dir = var_dir
        self.port = port
        self.worker_metrics_port = _free_port()
        self.log = var_dir / "honcho.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> Honcho:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "SKULENS_RUN_SKIP_SETUP": "1",  # the test prepared the database itself
            "SKULENS_VAR_DIR": str(self.var_dir),
            "SKULENS_PORT": str(self.port),
            "DATABASE_URL": database_url(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),  # the shared media and artefact store
            "SKULENS_INDEX_DIR": str(self.var_dir / "index"),  # filled from the store
            "PROMETHEUS_MULTIPROC_DIR": str(self.var_dir / "metrics"),
            "DJANGO_DEBUG": "true",  # as make run: static files straight from the finders
            "SKULENS_DETECTOR_WEIGHTS": "", "SKULENS_SEGMENTATION": "none",
            "SKULENS_TORCH_THREADS": "1",
            "SKULENS_RETRAIN_CHECK_S": "3",  # beat sends the retraining check every 3 s
            # The first worker up also serves the machine's metrics (as on a GPU host).
            "SKULENS_WORKER_METRICS_PORT": str(self.worker_metrics_port),
            **env,
        }
        for name in ("CELERY_BROKER_URL", "PORT"):
            environment.pop(name, None)  # the embedded default: filesystem://
        self.process = subprocess.Popen(
            ["bash", "scripts/run.sh"], cwd=ROOT, env=environment,
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C, as a person stops make run
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)


@pytest.fixture
def honcho(tmp_path: Path) -> Iterator[Honcho]:
    runner = Honcho(tmp_path / "var", _free_port())
    yield runner
    runner.stop()


def _filesystem_broker(var_dir: Path) -> Connection:
    folder = var_dir / "broker"
    return Connection("filesystem://", transport_options={
        "data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
    })


def test_make_run_starts_every_procfile_process_under_honcho(
    honcho, catalogue, appraiser, monkeypatch
) -> None:
    # The suite hashes with MD5 for speed; the server knows only the production hashers.
    hasher = PBKDF2PasswordHasher()
    appraiser.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    appraiser.save()
    honcho.start()
    _wait_for(lambda: requests.get(honcho.url("/healthz"), timeout=5).ok, 180, "web", honcho.log)
    for name in ("web", "gpu", "default", "beat"):
        _wait_for(lambda n=name: re.search(rf"\b{n}\.1\s+\|", honcho.output()) is not None, 60,
                  f"{name} started", honcho.log)
    _wait_for(lambda: honcho.output().count(" ready.") >= 2, 180, "both workers", honcho.log)
    ready = requests.get(honcho.url("/readyz"), timeout=10)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["broker"]["transport"] == "filesystem"
    # This "machine" had no index directory: the gpu worker filled it from the store.
    assert checks["index"]["source"] in ("local", "store")
    assert (honcho.var_dir / "index" / catalogue.name / ".verified").is_file()

    # An appraiser uploads through the API; the gpu worker matches it.
    session = requests.Session()
    session.get(honcho.url("/accounts/login/"), timeout=10)
    login = session.post(honcho.url("/accounts/login/"), timeout=10, data={
        "username": appraiser.username, "password": PASSWORD,
        "csrfmiddlewaretoken": session.cookies["csrftoken"],
    }, headers={"Referer": honcho.url("/accounts/login/")})
    assert login.ok and "sessionid" in session.cookies
    photo = demo_photo_upload("DEMO-KIR-SUM-01")
    created = session.post(
        honcho.url("/api/v1/matches"), timeout=30,
        files={"photos": (photo.name, photo.read(), "image/jpeg")},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": honcho.url("/")},
    )
    assert created.status_code == 202, created.text
    match_id = created.json()["id"]
    _wait_for(lambda: MatchRequest.objects.get(pk=match_id).is_finished, 180, "the match",
              honcho.log)
    done = MatchRequest.objects.get(pk=match_id)
    assert done.status == "done", done.error
    assert done.index_version == catalogue.name and done.candidates.exists()

    # Beat's schedule runs here too: the retraining check reaches the gpu worker.
    _wait_for(lambda: re.search(r"gpu\.1\s+\|.*learning\.check_retraining\[.*\] succeeded",
                                honcho.output()) is not None, 60, "a beat task", honcho.log)
    # The default worker takes the light jobs (published, not run here: no eager mode).
    # Patched as an item: Celery's Settings is a layered mapping, whose attribute undo failed.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    with _filesystem_broker(honcho.var_dir) as connection:
        recalibrate_thresholds.apply_async(connection=connection, queue="default")
    _wait_for(lambda: re.search(r"default\.1\s+\|.*recalibrate_thresholds\[.*\] succeeded",
                                honcho.output()) is not None, 60, "a default task", honcho.log)

    # One scrape of the web process shows what the worker process recorded.
    metrics = requests.get(honcho.url("/metrics"), timeout=10).text
    embed = re.search(r'^skulens_match_stage_seconds_count\{stage="embed"\} (\S+)$', metrics,
                      re.M)
    assert embed and float(embed.group(1)) >= 1, metrics[:3000]
    assert re.search(rf'^skulens_worker_serving_info\{{index_version="{catalogue.name}".*'
                     r'pid="\d+"\} 1\.0$', metrics, re.M), metrics[:3000]
    assert 'skulens_queue_depth{queue="gpu"}' in metrics
    from_worker = requests.get(f"http://127.0.0.1:{honcho.worker_metrics_port}/", timeout=10)
    assert from_worker.ok and 'skulens_match_stage_seconds_count{stage="embed"}' in from_worker.text

    # Static files come from whitenoise under gunicorn.
    css = requests.get(honcho.url("/static/css/app.css"), timeout=10)
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]

    assert honcho.stop() is not None
    assert not re.search(r"Traceback", honcho.output()), honcho.output()[-5000:]
