"""Scale-out rehearsal on one machine, and the web server's time targets (docs/benchmarks.md).

Runs the production set-up as separate processes: PostgreSQL and Redis (scripts/services.sh
starts them), the web app under gunicorn with two workers (scripts/serve.sh), matching workers
on the ``gpu`` queue (scripts/worker.sh, each with its own index directory filled from the
artefact store), one worker on ``default`` and beat. Then, in one run:

1. **one matching worker**: locust sends 200 concurrent uploads through the API (each its own
   token and a unique file name) while 50 QA reviewers poll their pages; the run waits for the
   queue to drain and checks that every upload became exactly one request, matched exactly
   once (one row per upload, one task delivery per request, ``attempts == 1``, candidates
   ranked 1..k once), none lost, none duplicated;
2. **two matching workers**: the same again with a second worker started;
3. **server time** with the workers idle: 50 users polling the appraiser's result page and the
   QA queue; then API enqueue with the matching workers stopped. Percentiles are the server's
   own request times (gunicorn's access log, ``%(M)s``), beside locust's.

    bash scripts/services.sh                      # PostgreSQL + Redis
    flock /tmp/skulens-heavy.lock python bench/rehearsal.py --port 8014 \\
        --database skulens_rehearsal --redis redis://127.0.0.1:6379/4 --out var/rehearsal

It drops and re-creates ``--database`` (role skulens/skulens) and flushes the Redis database.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from index_10m import cpu_summary  # noqa: E402

ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d+) \S+ '
                    r"(?P<ms>\d+)ms")


class Process:
    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        return bool(response.status == 200)


def sh(*command: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True,
                          text=True).stdout


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values, dtype=float)
    return {"n": len(arr), "p50": float(np.percentile(arr, 50)),
            "p95": float(np.percentile(arr, 95)), "p99": float(np.percentile(arr, 99)),
            "max": float(arr.max())}


def access_times(text: str, method: str, prefix: str) -> list[float]:
    return [float(m["ms"]) for m in ACCESS.finditer(text)
            if m["method"] == method and m["path"].startswith(prefix)]


def locust(args: argparse.Namespace, env: dict[str, str], scenario: str, tag: str, users: int,
           run_time: str) -> dict[str, Any]:
    out = args.out / f"locust-{tag}"
    command = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "bench/locustfile.py"), "--headless",
        "-u", str(users), "-r", str(users), "--run-time", run_time, "--stop-timeout", "30",
        "--host", f"http://127.0.0.1:{args.port}", "--csv", str(out), "--only-summary",
        "--loglevel", "WARNING",
    ]
    locust_env = {**env, "LOCUST_SCENARIO": scenario, "LOCUST_TAG": tag,
                  "LOCUST_USERS": str(args.out / "users.json"),
                  "LOCUST_PHOTOS": str(args.var / "demo" / "photos"),
                  "LOCUST_UPLOADS": str(args.uploads), "LOCUST_REVIEWERS": str(args.reviewers)}
    started = time.time()
    result = subprocess.run(command, cwd=ROOT, env=locust_env, capture_output=True, text=True)
    (args.out / f"locust-{tag}.out").write_text(result.stdout + result.stderr)
    rows = list(csv.DictReader((Path(f"{out}_stats.csv")).open()))
    stats = {
        r["Name"]: {"requests": int(r["Request Count"]), "failures": int(r["Failure Count"]),
                    "p50_ms": float(r["50%"] or 0), "p95_ms": float(r["95%"] or 0),
                    "p99_ms": float(r["99%"] or 0), "rps": float(r["Requests/s"] or 0)}
        for r in rows
    }
    return {"seconds": time.time() - started, "exit": result.returncode, "stats": stats}


def session_for(user: Any) -> str:
    """A logged-in session cookie, made the way Django's test client logs in (no password
    hashing, which costs seconds a login on this CPU)."""
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        load_backend,
    )
    from django.contrib.sessions.backends.db import SessionStore

    # The first backend that can load users, as Client.force_login picks it (django-axes's
    # comes first and only checks lockouts).
    backend = next(b for b in settings.AUTHENTICATION_BACKENDS
                   if hasattr(load_backend(b), "get_user"))
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = backend
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return str(store.session_key)


def role_users(prefix: str, count: int, role: Any) -> list[Any]:
    """`count` users named `<prefix>000`... in `role`'s group, without passwords (the load
    test logs them in with tokens or session cookies); made once, reused after."""
    from django.contrib.auth.models import Group, User

    from webapp.accounts.services import roles_ensure

    roles_ensure()
    group = Group.objects.get(name=role.value)
    made = []
    for n in range(count):
        user, _ = User.objects.get_or_create(username=f"{prefix}{n:03d}")
        user.set_unusable_password()
        user.save()
        user.groups.set([group])
        made.append(user)
    return made


def users_file(args: argparse.Namespace) -> dict[str, Any]:
    """API tokens for the uploaders, session cookies for the reviewers."""
    from knox.models import AuthToken

    from webapp.accounts.roles import Role

    uploaders = role_users("uploader", args.uploads, Role.APPRAISER)
    reviewers = role_users("reviewer", args.reviewers, Role.QA)
    data = {
        # One API token (knox: the secret is shown once, at creation) per uploader.
        "uploaders": [{"username": u.username, "token": AuthToken.objects.create(user=u)[1]}
                      for u in uploaders],
        "reviewers": [{"username": u.username, "session": session_for(u)} for u in reviewers],
        "bad_cases": [],
        "pollers": [],
    }
    (args.out / "users.json").write_text(json.dumps(data))
    return data


def phase_check(tag: str, workers: list[Process], offsets: dict[str, int],
                expected: int) -> dict[str, Any]:
    """Every upload of this phase: one request, done once; from the database and the logs."""
    from django.db.models import Count, Max, Min

    from webapp.matching.models import Candidate, MatchRequest, QueryPhoto

    photos = QueryPhoto.objects.filter(original_name__startswith=f"{tag}-")
    names = Counter(photos.values_list("original_name", flat=True))
    ids = set(photos.values_list("request_id", flat=True))
    requests = MatchRequest.objects.filter(pk__in=ids)
    statuses = Counter(requests.values_list("status", flat=True))
    attempts = Counter(requests.values_list("attempts", flat=True))
    ranks_ok = all(
        sorted(Candidate.objects.filter(request_id=i).values_list("rank", flat=True))
        == list(range(1, Candidate.objects.filter(request_id=i).count() + 1))
        for i in ids
    )
    received: Counter[str] = Counter()
    by_worker: dict[str, int] = {}
    for worker in workers:
        text = worker.text()[offsets.get(worker.name, 0):]
        found = re.findall(r"Task matching\.run_match\[([0-9a-f-]+)\] received", text)
        received.update(found)
        by_worker[worker.name] = len(found)
    window = requests.aggregate(first=Min("created_at"), last_created=Max("created_at"),
                                last=Max("finished_at"))
    makespan = (window["last"] - window["first"]).total_seconds()
    drain = (window["last"] - window["last_created"]).total_seconds()
    batches = Counter(requests.values_list("batch_size", flat=True))
    stored_photos = photos.count()
    return {
        "uploads_expected": expected,
        "rows_for_uploads": len(ids),
        "duplicate_uploads": sum(1 for c in names.values() if c > 1),
        "lost_uploads": expected - len(names),
        "statuses": dict(statuses),
        "attempts": {str(k): v for k, v in attempts.items()},
        "candidate_ranks_once": ranks_ok,
        "task_deliveries": sum(received.values()),
        "tasks_delivered_twice": sum(1 for c in received.values() if c > 1),
        "tasks_by_worker": by_worker,
        "batch_sizes": {str(k): v for k, v in sorted(batches.items())},
        "first_upload_to_last_done_s": makespan,
        "last_upload_to_last_done_s": drain,
        "photos": stored_photos,
        "photos_per_s": stored_photos / makespan if makespan else 0.0,
        "candidates_per_request": dict(Counter(
            requests.annotate(n=Count("candidates")).values_list("n", flat=True))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8014)
    parser.add_argument("--database", default="skulens_rehearsal")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "rehearsal")
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--page-users", type=int, default=50)
    parser.add_argument("--enqueue-users", type=int, default=10)
    parser.add_argument("--serving-seconds", type=int, default=60)
    parser.add_argument("--timeout-s", type=int, default=1800, help="per phase")
    parser.add_argument("--serving-only", action="store_true",
                        help="only the server-time part (3.)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database, catalogue and index of an earlier run")
    args = parser.parse_args()
    try:  # a shared machine: every process of the rehearsal inherits a larger CPU share
        if os.nice(0) > -5:
            os.setpriority(os.PRIO_PROCESS, 0, -5)
    except PermissionError:
        pass
    args.out = args.out.resolve()
    args.var = args.out / "var"
    logs = args.out / "logs"
    for folder in (args.out, logs):
        folder.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()

    db_url = f"postgres://skulens:skulens@127.0.0.1:5432/{args.database}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "rehearsal-only-secret"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": db_url,
        "DATABASE_CONN_MAX_AGE": "60",
        "CELERY_BROKER_URL": args.redis,
        "SKULENS_VAR_DIR": str(args.var),
        "MEDIA_ROOT": str(args.var / "media"),  # the shared media + artefact store
        "PROMETHEUS_MULTIPROC_DIR": str(args.var / "metrics"),
        "SKULENS_TORCH_THREADS": "1",  # one core per matching worker, no oversubscription
        "SKULENS_API_THROTTLE": "6000/minute",
        "SKULENS_HOST": "127.0.0.1",
        "SKULENS_PORT": str(args.port),
        "WEB_CONCURRENCY": "2",
    }
    env.pop("PORT", None)
    report: dict[str, Any] = {
        "machine": cpu_summary(), "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "load_avg_start": os.getloadavg()[0], "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(f"# rehearsal on {report['machine']}, {report['date']}", flush=True)

    sh("bash", "scripts/services.sh")
    if not args.reuse:
        for query in (f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)",
                      f"CREATE DATABASE {args.database} OWNER skulens"):
            subprocess.run(["su", "postgres", "-c", f'psql -qc "{query}"'], check=True)
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    def manage(*command: str) -> str:  # with the project's environment (jemalloc, detector)
        return sh("bash", "-c", 'source scripts/env.sh && exec python manage.py "$@"', "manage",
                  *command, env=env)

    if not args.reuse:
        manage("migrate", "--no-input", "-v", "0")
        manage("load_demo_catalogue")
        manage("build_index")
    os.environ.update(env)
    import django

    django.setup()
    users = users_file(args)

    processes: list[Process] = []
    try:
        web = Process("web", ["bash", "scripts/serve.sh"], env, logs)
        default = Process("default", ["bash", "scripts/default-worker.sh"], env, logs)
        beat = Process("beat", ["bash", "scripts/beat.sh"], env, logs)
        processes += [web, default, beat]

        def gpu(n: int) -> Process:
            worker_env = {**env, "SKULENS_INDEX_DIR": str(args.var / f"index-gpu{n}")}
            worker = Process(f"gpu{n}", ["bash", "scripts/worker.sh", "-n", f"gpu{n}@%h"],
                             worker_env, logs)
            processes.append(worker)
            wait_for(lambda: " ready." in worker.text(), 300, f"worker gpu{n}")
            return worker

        base = f"http://127.0.0.1:{args.port}"
        wait_for(lambda: http_ok(f"{base}/healthz"), 1200, "gunicorn (after collectstatic)")
        workers = [gpu(1)]
        wait_for(lambda: http_ok(f"{base}/readyz"), 120, "readiness")
        report["phases"] = {}
        from webapp.matching.models import MatchRequest, QueryPhoto

        stamp = datetime.now(UTC).strftime("%H%M%S")  # this run's uploads, whatever ran before
        for tag, count in () if args.serving_only else ((f"one{stamp}", 1), (f"two{stamp}", 2)):
            while len(workers) < count:
                workers.append(gpu(len(workers) + 1))
            offsets = {w.name: len(w.text()) for w in workers}
            print(f"phase {tag}: {count} matching worker(s), {args.uploads} uploads, "
                  f"{args.reviewers} reviewers", flush=True)
            load = locust(args, env, "rehearsal", tag, args.uploads + args.reviewers,
                          f"{args.timeout_s}s")
            def drained(t: str = tag) -> bool:
                ids = QueryPhoto.objects.filter(original_name__startswith=f"{t}-").values(
                    "request_id")
                return not MatchRequest.objects.filter(
                    pk__in=ids, status__in=["queued", "running"]).exists()

            wait_for(drained, args.timeout_s, f"phase {tag} to drain")
            check = phase_check(tag, workers, offsets, args.uploads)
            report["phases"][tag] = {"workers": count, "locust": load, "check": check}
            print(json.dumps(report["phases"][tag], indent=1, default=str), flush=True)
        if report["phases"]:
            one, two = (p["check"]["photos_per_s"] for p in report["phases"].values())
            report["throughput_ratio_two_over_one"] = two / one if one else None

        # Server time with the workers idle: the pages, then enqueue with no worker consuming.
        from webapp.matching.decisions import decision_record
        from webapp.matching.models import Decision

        done = list(MatchRequest.objects.filter(status="done", decision__isnull=True)
                    .select_related("created_by").order_by("pk")[: max(args.page_users, 60)])
        for request in done[:60:2]:  # a QA queue with work in it
            decision_record(request=request, user=request.created_by,
                            outcome=Decision.Outcome.REJECT)
        from django.contrib.auth.models import User

        qa = list(User.objects.filter(username__startswith="reviewer").order_by("pk"))
        half = args.page_users // 2
        users["pollers"] = (
            [{"session": session_for(r.created_by), "page": f"/match/{r.pk}/", "role": "appraiser"}
             for r in done[1:2 * half:2]]
            + [{"session": session_for(u), "page": "/review/", "role": "qa"}
               for u in qa[: args.page_users - half]]
        )
        (args.out / "users.json").write_text(json.dumps(users))
        time.sleep(10)  # let beat's and the workers' start-up work settle
        mark = len(web.text())
        report["load_avg_pages"] = os.getloadavg()[0]
        pages = locust(args, env, "pages", "pages", args.page_users, f"{args.serving_seconds}s")
        text = web.text()[mark:]
        pages["server_ms"] = {
            "result page (htmx)": percentiles(access_times(text, "GET", "/match/")),
            "QA queue": percentiles(access_times(text, "GET", "/review/")),
        }
        report["pages"] = pages
        for worker in workers:  # enqueue: nothing may consume the queue meanwhile
            worker.stop()
        mark = len(web.text())
        enqueue = locust(args, env, "enqueue", "enqueue", args.enqueue_users,
                         f"{args.serving_seconds}s")
        enqueue["server_ms"] = {
            "API enqueue": percentiles(access_times(web.text()[mark:], "POST", "/api/v1/matches"))
        }
        report["enqueue"] = enqueue
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:  # noqa: S310
            (args.out / "metrics.txt").write_bytes(response.read())
    finally:
        for process in reversed(processes):
            process.stop()
    report["load_avg_end"] = os.getloadavg()[0]
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: report.get(k) for k in ("throughput_ratio_two_over_one", "pages",
                                                   "enqueue")}, indent=1, default=str))


if __name__ == "__main__":
    main()
