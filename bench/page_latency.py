"""Server time of the appraiser's result page and the QA queue (issue 14), before against after.

Two steps:

``seed``: a database of realistic size. The demo catalogue and its labelled history
(``load_demo_catalogue``), the index (``build_index``), then ``--real`` photos matched for
real (detector, embedding, re-ranking with its evidence) in this process; those requests are
then copied, rows and JSON as the matcher stored them, up to ``--requests`` finished requests
with their photos and candidates. Each gets a decision as appraisers make them (accept,
reject, another SKU, new SKU), so rejections and corrections open bad cases; a share of the
bad cases is resolved with causes. The reviewers' and appraisers' session cookies go into
``<out>/users.json``.

``measure``: for each ``--tree NAME=PATH`` (a checkout of the project: ``before`` at the
base commit, ``after`` at this one), a copy of the seeded database (``CREATE DATABASE ...
TEMPLATE``) migrated by that tree, gunicorn from that tree (``scripts/web.sh``: 2 processes x
4 threads, production settings, whitenoise), and locust's ``pages`` scenario (bench/
locustfile.py): ``--users`` users, half appraisers polling their finished result page as
htmx does, half QA users on the queue, each 0.5-1.5 s apart. Trees take turns for
``--rounds`` rounds, so both see the same machine. Server time is gunicorn's own request time
(access log ``%(M)s``), beside locust's client-side time.

    bash scripts/services.sh
    source scripts/env.sh
    python bench/page_latency.py seed --database skulens_pages --out /tmp/pages
    git archive <base> | tar -x -C /tmp/pages/before && ln -s "$PWD/.venv" /tmp/pages/before/
    flock /tmp/skulens-heavy.lock python bench/page_latency.py measure --database skulens_pages \\
        --out /tmp/pages --tree before=/tmp/pages/before --tree after=.

``cost`` (after ``measure``, which prepares each tree's database): per tree, the queries, the
time in SQL and the CPU time of one request at a time, in process through Django's test client.

``seed`` drops and re-creates ``--database`` (role skulens/skulens); ``measure`` drops and
re-creates ``<database>_<tree>``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from index_10m import cpu_summary  # noqa: E402
from rehearsal import (  # noqa: E402
    Process,
    access_times,
    http_ok,
    locust,
    percentiles,
    role_users,
    session_for,
    wait_for,
)

PAGES = {"result page (htmx)": ("GET", "/match/"), "QA queue": ("GET", "/review/")}


def database_url(name: str) -> str:
    return f"postgres://skulens:skulens@127.0.0.1:5432/{name}"


def psql(query: str) -> None:
    subprocess.run(["su", "postgres", "-c", f'psql -qc "{query}"'], check=True)


def recreate(name: str, template: str | None = None) -> None:
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(f"CREATE DATABASE {name} OWNER skulens" + (f" TEMPLATE {template}" if template else ""))


def base_env(args: argparse.Namespace, database: str, var: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "webapp.config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY", "page-latency-only-secret"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url(database),
        "DATABASE_CONN_MAX_AGE": "60",
        "CELERY_BROKER_URL": args.redis,
        "SKULENS_VAR_DIR": str(var),
        "MEDIA_ROOT": str(args.out / "media"),
        "PROMETHEUS_MULTIPROC_DIR": str(var / "metrics"),
        "SKULENS_TORCH_THREADS": "2",
        "SKULENS_HOST": "127.0.0.1",
        "SKULENS_PORT": str(args.port),
        "WEB_CONCURRENCY": str(args.web_processes),
        "SKULENS_WEB_THREADS": str(args.web_threads),
    }
    env.pop("PORT", None)
    return env


# ----- seed ----------------------------------------------------------------------------------

def _copy_request(template: Any, *, user: Any, created_at: datetime) -> Any:
    """A finished request with the template's photos (same files), candidates and evidence."""
    from webapp.matching.models import Candidate, MatchRequest

    fields = {f.attname: getattr(template, f.attname) for f in MatchRequest._meta.concrete_fields
              if f.attname not in ("id", "created_by_id", "created_at")}
    request = MatchRequest.objects.create(**fields, created_by=user)
    MatchRequest.objects.filter(pk=request.pk).update(
        created_at=created_at, enqueued_at=created_at,
        started_at=created_at + timedelta(seconds=1),
        finished_at=created_at + timedelta(seconds=2))
    photos = {}
    for photo in template.photos.all():
        old = photo.pk
        photo.pk, photo.request_id = None, request.pk
        photo.save()
        photos[old] = photo.pk
    Candidate.objects.bulk_create([
        Candidate(request=request, rank=c.rank, sku_id=c.sku_id, score=c.score, cosine=c.cosine,
                  query_photo_id=photos[c.query_photo_id], reference_image_id=c.reference_image_id,
                  evidence=c.evidence)
        for c in template.candidates.all()
    ])
    request.refresh_from_db()
    return request


def seed(args: argparse.Namespace) -> None:
    var = args.out / "seed-var"
    var.mkdir(parents=True, exist_ok=True)
    (args.out / "media").mkdir(parents=True, exist_ok=True)
    recreate(args.database)
    env = {**base_env(args, args.database, var), "CELERY_TASK_ALWAYS_EAGER": "true",
           "SKULENS_GALLERY_ENRICHMENT": "none"}

    def manage(*command: str) -> None:
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)

    started = time.monotonic()
    manage("migrate", "--no-input", "-v", "0")
    manage("load_demo_catalogue")
    manage("build_index")
    print(f"catalogue, history and index in {time.monotonic() - started:.0f} s", flush=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.files.uploadedfile import SimpleUploadedFile

    from webapp.accounts.roles import Role
    from webapp.catalog.models import SKU
    from webapp.matching.decisions import decision_record
    from webapp.matching.models import Decision, MatchRequest
    from webapp.matching.requests import match_request_create
    from webapp.review.models import BadCase, FailureCause
    from webapp.review.services import bad_case_resolve

    rng = random.Random(14)
    appraisers = role_users("appraiser", args.users, Role.APPRAISER)
    reviewers = role_users("reviewer", args.users, Role.QA)

    photos = sorted((var / "demo" / "photos").glob("*.jpg"))[: args.real]
    started = time.monotonic()
    real = []
    for n, path in enumerate(photos):
        upload = SimpleUploadedFile(path.name, path.read_bytes(), content_type="image/jpeg")
        request = match_request_create(user=appraisers[n % len(appraisers)], uploads=[upload],
                                       query_text="leather tote" if n % 3 == 0 else "")
        real.append(MatchRequest.objects.get(pk=request.pk))
    print(f"{len(real)} photos matched for real in {time.monotonic() - started:.0f} s; "
          f"statuses {sorted({r.status for r in real})}", flush=True)
    templates = [r for r in real if r.status == MatchRequest.Status.DONE]
    if not templates:
        raise SystemExit("no real match finished")

    started = time.monotonic()
    now = datetime.now(UTC)
    skus = list(SKU.objects.filter(is_active=True).values_list("pk", flat=True))
    made = []
    for n in range(args.requests - len(templates)):
        template = MatchRequest.objects.prefetch_related("photos", "candidates").get(
            pk=templates[n % len(templates)].pk)
        made.append(_copy_request(template, user=appraisers[n % len(appraisers)],
                                  created_at=now - timedelta(minutes=5 * (args.requests - n))))
    everything = templates + made
    # Decisions as appraisers make them; the last of each appraiser's requests stays open.
    undecided = set()
    for user in appraisers:
        mine = [r for r in everything if r.created_by_id == user.pk]
        undecided.update(r.pk for r in mine[-2:])
    outcomes = [(Decision.Outcome.ACCEPT, 0.55), (Decision.Outcome.REJECT, 0.25),
                (Decision.Outcome.OTHER_SKU, 0.15), (Decision.Outcome.NEW_SKU, 0.05)]
    for request in everything:
        if request.pk in undecided:
            continue
        outcome = rng.choices([o for o, _ in outcomes], [w for _, w in outcomes])[0]
        kwargs: dict[str, Any] = {}
        if outcome == Decision.Outcome.ACCEPT:
            kwargs["candidate_id"] = rng.choice(list(request.candidates.values_list("pk",
                                                                                    flat=True)))
        elif outcome == Decision.Outcome.OTHER_SKU:
            kwargs["sku_id"] = rng.choice(skus)
        elif outcome == Decision.Outcome.NEW_SKU:
            kwargs["note"] = "a tote not in the catalogue"
        decision_record(request=request, user=request.created_by, outcome=outcome, **kwargs)
    causes = [c for c in FailureCause.values if c != FailureCause.CATALOGUE_GAP]
    open_cases = list(BadCase.objects.filter(status=BadCase.Status.OPEN).order_by("pk"))
    for case in open_cases[: int(len(open_cases) * args.resolved_share)]:
        bad_case_resolve(bad_case=case, actor=reviewers[0], causes=rng.sample(causes, 2),
                         correct_sku=SKU.objects.get(pk=rng.choice(skus)), note="")
    print(f"{len(made)} copies and decisions in {time.monotonic() - started:.0f} s", flush=True)

    # Pollers: appraisers on a finished, undecided result page of their own; QA on the queue.
    half = args.users // 2
    pages = []
    for user in appraisers[:half]:
        mine = [r for r in everything if r.created_by_id == user.pk and r.pk in undecided]
        pages.append({"session": session_for(user), "page": f"/match/{mine[-1].pk}/",
                      "role": "appraiser"})
    pages += [{"session": session_for(u), "page": "/review/", "role": "qa"}
              for u in reviewers[: args.users - half]]
    from django.db import connection

    from webapp.matching.models import Candidate

    counts = {
        "match requests": MatchRequest.objects.count(),
        "of them imported history": MatchRequest.objects.filter(source="history").count(),
        "candidates": Candidate.objects.count(),
        "candidates with evidence": Candidate.objects.exclude(evidence={}).count(),
        "bad cases": BadCase.objects.count(),
        "open bad cases": BadCase.objects.filter(status=BadCase.Status.OPEN).count(),
        "decisions": Decision.objects.count(),
        "skus": SKU.objects.count(),
    }
    with connection.cursor() as cursor:  # the planner's statistics for EXPLAIN, as in use
        cursor.execute("ANALYZE")
    connection.close()
    (args.out / "users.json").write_text(json.dumps(
        {"uploaders": [], "reviewers": [], "bad_cases": [], "pollers": pages}))
    (args.out / "seed.json").write_text(json.dumps(counts, indent=1))
    print(json.dumps(counts, indent=1), flush=True)


# ----- measure -------------------------------------------------------------------------------

def measure(args: argparse.Namespace) -> None:
    trees = dict(t.split("=", 1) for t in args.tree)
    report: dict[str, Any] = {
        "machine": cpu_summary(), "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "load_avg_start": os.getloadavg()[0], "args": {k: str(v) for k, v in vars(args).items()},
        "rounds": [],
    }
    print(f"# page latency on {report['machine']}, {report['date']}", flush=True)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    prepared = {}
    for name, path in trees.items():
        tree = Path(path).resolve()
        database = f"{args.database}_{name}"
        recreate(database, template=args.database)
        var = args.out / f"var-{name}"
        var.mkdir(parents=True, exist_ok=True)
        env = base_env(args, database, var)
        commands = [["migrate", "--no-input", "-v", "0"]]
        if not (var / "static" / "staticfiles.json").exists():  # minutes on a busy machine
            commands.append(["collectstatic", "--no-input", "-v", "0"])
        for command in commands:
            subprocess.run(["bash", "-c", 'source scripts/env.sh && exec python manage.py "$@"',
                            "manage", *command], cwd=tree, env=env, check=True)
        prepared[name] = (tree, env)
    server: dict[str, dict[str, list[float]]] = {n: {p: [] for p in PAGES} for n in trees}
    client: dict[str, dict[str, list[dict[str, Any]]]] = {n: {} for n in trees}
    base = f"http://127.0.0.1:{args.port}"
    for round_ in range(args.rounds):
        for name, (tree, env) in prepared.items():
            log = logs / f"web-{name}-{round_}.log"
            log.unlink(missing_ok=True)
            web = Process(f"web-{name}-{round_}", ["bash", str(tree / "scripts/web.sh")], env, logs)
            try:
                wait_for(lambda: http_ok(f"{base}/healthz"), 120, f"gunicorn ({name})")
                # Warm both processes' templates, connections and caches before timing.
                locust(args, env, "pages", f"warm-{name}-{round_}", args.users, "10s")
                mark = len(web.text())
                load = os.getloadavg()[0]
                run = locust(args, env, "pages", f"pages-{name}-{round_}", args.users,
                             f"{args.seconds}s")
                text = web.text()[mark:]
            finally:
                web.stop()
            times = {p: access_times(text, method, prefix) for p, (method, prefix) in PAGES.items()}
            for page, values in times.items():
                server[name][page] += values
            for label, stats in run["stats"].items():
                client[name].setdefault(label, []).append(stats)
            entry = {"tree": name, "round": round_, "load_avg": load,
                     "server_ms": {p: percentiles(v) for p, v in times.items()},
                     "locust": run["stats"]}
            report["rounds"].append(entry)
            print(json.dumps({k: entry[k] for k in ("tree", "round", "load_avg", "server_ms")},
                             default=str), flush=True)
    report["server_ms"] = {n: {p: percentiles(v) for p, v in pages.items()}
                           for n, pages in server.items()}
    report["load_avg_end"] = os.getloadavg()[0]
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print("server time over all rounds (ms):")
    for name, pages in report["server_ms"].items():
        for page, p in pages.items():
            if p.get("n"):
                print(f"  {name:8s} {page:20s} n={p['n']:5d} p50 {p['p50']:7.1f} "
                      f"p95 {p['p95']:7.1f} p99 {p['p99']:7.1f}")


# ----- cost: one request at a time, in process --------------------------------------------

def cost(args: argparse.Namespace) -> None:
    """Per tree: queries, time in SQL, and this process's CPU time per page, one request at a
    time through Django's test client (what the page costs, apart from any queueing)."""
    trees = dict(t.split("=", 1) for t in args.tree)
    report: dict[str, Any] = {"machine": cpu_summary(),
                              "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "trees": {}}
    for name, path in trees.items():
        tree = Path(path).resolve()
        env = base_env(args, f"{args.database}_{name}", args.out / f"var-{name}")
        result = subprocess.run(
            ["bash", "-c", 'source scripts/env.sh && exec python "$@"', "cost",
             str(Path(__file__).resolve()), "cost-one", "--out", str(args.out),
             "--repeat", str(args.repeat)],
            cwd=tree, env=env, check=True, capture_output=True, text=True)
        report["trees"][name] = json.loads(result.stdout.strip().splitlines()[-1])
        for page, row in report["trees"][name].items():
            print(f"  {name:8s} {page:20s} {row['queries']:3d} queries, {row['sql_ms']:6.1f} ms "
                  f"in SQL, CPU {row['cpu_ms']:6.1f} ms, wall {row['wall_ms']:6.1f} ms a page",
                  flush=True)
    (args.out / "cost.json").write_text(json.dumps(report, indent=2))


def cost_one(args: argparse.Namespace) -> None:
    sys.path.insert(0, os.getcwd())  # the tree being measured, not this file's
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    pollers = json.loads((args.out / "users.json").read_text())["pollers"]
    appraiser = next(u for u in pollers if u["role"] == "appraiser")
    qa = next(u for u in pollers if u["role"] == "qa")
    log: list[float] = []

    def timed(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            log.append((time.perf_counter() - started) * 1000)

    out = {}
    for page, user, path, headers in (
        ("result page (htmx)", appraiser, appraiser["page"], {"HTTP_HX_REQUEST": "true"}),
        ("result page (htmx, as a browser repeats it)", appraiser, appraiser["page"],
         {"HTTP_HX_REQUEST": "true", "revalidate": "yes"}),
        ("result page (full)", appraiser, appraiser["page"], {}),
        ("QA queue", qa, "/review/", {}),
        ("QA queue (nothing cached)", qa, "/review/", {"uncached": "yes"}),
        ("QA queue (as a browser reloads it)", qa, "/review/", {"revalidate": "yes"}),
    ):
        client = Client()
        client.cookies["sessionid"] = user["session"]
        # As the first reviewer of a minute sees it: no cached rows or filter options.
        fresh = cache.clear if headers.pop("uncached", None) else (lambda: None)
        if headers.pop("revalidate", None):  # a tree that sends an ETag gets it back (304)
            etag = client.get(path, **headers).get("ETag")
            headers = {**headers, **({"HTTP_IF_NONE_MATCH": etag} if etag else {})}
        for _ in range(3):
            assert client.get(path, **headers).status_code in (200, 304)
        log.clear()
        fresh()
        with connection.execute_wrapper(timed):
            client.get(path, **headers)
        queries, sql_ms = len(log), sum(log)
        cpu_s = wall_s = 0.0
        for _ in range(args.repeat):
            fresh()
            wall, cpu = time.perf_counter(), time.process_time()
            client.get(path, **headers)
            cpu_s += time.process_time() - cpu
            wall_s += time.perf_counter() - wall
        out[page] = {"queries": queries, "sql_ms": sql_ms,
                     "cpu_ms": cpu_s * 1000 / args.repeat, "wall_ms": wall_s * 1000 / args.repeat}
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["seed", "measure", "cost", "cost-one"])
    parser.add_argument("--database", default="skulens_pages")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "page-latency")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--port", type=int, default=8015)
    parser.add_argument("--users", type=int, default=50, help="concurrent page users")
    parser.add_argument("--real", type=int, default=40, help="photos matched for real (seed)")
    parser.add_argument("--requests", type=int, default=2000, help="finished requests (seed)")
    parser.add_argument("--resolved-share", type=float, default=0.3,
                        help="of the bad cases, resolved by QA (seed)")
    parser.add_argument("--tree", action="append", default=[],
                        help="NAME=PATH of a checkout to serve (measure); repeat")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=45, help="timed seconds per round")
    parser.add_argument("--web-processes", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=30, help="requests a page (cost)")
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    # locust() of bench/rehearsal.py reads these.
    args.var, args.uploads, args.reviewers = args.out / "seed-var", 0, 0
    if args.step == "seed":
        seed(args)
    elif args.step == "cost-one":
        cost_one(args)
    else:
        if not args.tree:
            parser.error(f"{args.step} needs at least one --tree NAME=PATH")
        (measure if args.step == "measure" else cost)(args)


if __name__ == "__main__":
    main()
