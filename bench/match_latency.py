"""Per-photo latency from upload to stored candidates, on this machine.

Runs the real path in one process: validation and storage (match_request_create), whose commit
runs the match task eagerly (load, embed, search, fuse, store). Time spent waiting in a broker
queue is excluded. Usage:

    python bench/match_latency.py [--runs 30] [--threads N] [--grocery ../shared/data/grocery]
                                  [--backlog N]

By default the catalogue and the photos are the drawn demo bags, which the COCO detector does
not recognise (the full frame is used, nothing is segmented). `--grocery` imports the grocery
catalogue instead, uploads its val photos and targets COCO's fruit and vegetable classes, so
that detection finds the item and GrabCut segments it: the full path with every stage.

`--backlog N` measures throughput instead: N one-photo requests wait in the queue and a worker
drains them, with batching off (SKULENS_MATCH_BATCH=1) and on (8; `--batches`), alternating,
`--runs` rounds.

`--runtimes today,auto` runs the same requests through several inference runtime choices side
by side in one process, request by request (or round by round with `--backlog`):
`today` = ultralytics' predictor (LiteRT) and PyTorch, the paths before issue 15; `auto` = the
settings' defaults (`SKULENS_DETECTOR_BACKEND`, `SKULENS_EMBED_BACKEND`); or
`<detector>:<embedding>` backend names. Each prints its end-to-end and stage medians and the
ratio of the end-to-end median to detection + embedding alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    parser.add_argument("--grocery", type=Path, help="Grocery Store Dataset root (see above)")
    parser.add_argument("--backlog", type=int, default=0, help="queued requests to drain")
    parser.add_argument("--batches", default="1,8", help="SKULENS_MATCH_BATCH values (backlog)")
    parser.add_argument("--runtimes", default="auto",
                        help="comma-separated: today, auto or <detector>:<embedding> backends")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="skulens-bench-"))
    os.environ.update(
        SKULENS_VAR_DIR=str(var), DJANGO_DEBUG="true", CELERY_TASK_ALWAYS_EAGER="true",
        SKULENS_LOG_LEVEL="WARNING", SKULENS_TORCH_THREADS=str(args.threads),
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings")
    import django

    django.setup()
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from webapp.accounts.roles import Role
    from webapp.accounts.services import user_create_with_role
    from webapp.catalog.models import Category, SKUImage
    from webapp.matching.models import MatchRequest
    from webapp.matching.requests import match_request_create

    call_command("migrate", verbosity=0)
    if args.grocery:
        call_command("import_catalogue", grocery=args.grocery, verbosity=0)
        Category.objects.update(detection_classes=GROCERY_DETECTION_CLASSES)
        photos = sorted((args.grocery / "val").glob("Fruit/*/*.jpg"))
        photos += sorted((args.grocery / "val").glob("Vegetables/*/*.jpg"))
        photos = photos[:: max(1, len(photos) // 40)]
    else:
        # The catalogue as measured so far: its drawn history would add 280 references.
        call_command("load_demo_catalogue", no_history=True, verbosity=0)
        photos = sorted((var / "demo" / "photos").glob("*.jpg"))
    call_command("build_index", verbosity=0)
    user = user_create_with_role(username="bench", password="bench-bench", role=Role.APPRAISER)

    def one(path: Path) -> tuple[float, float, dict[str, float]]:
        upload = SimpleUploadedFile(path.name, path.read_bytes(), content_type="image/jpeg")
        started = time.perf_counter()
        request = match_request_create(user=user, uploads=[upload])  # the task runs on commit
        total_ms = (time.perf_counter() - started) * 1000
        done = MatchRequest.objects.get(pk=request.pk)
        assert done.status == MatchRequest.Status.DONE, done.error
        found.append(done.photos.get().box_source)
        return total_ms - sum(done.timings_ms.values()), total_ms, done.timings_ms

    found = []
    runtimes = _load_runtimes(args.runtimes.split(","))
    for use in runtimes.values():
        with use():
            one(photos[0])  # warm-up: model and index load once per process
    if args.backlog:
        batches = [int(b) for b in args.batches.split(",")]
        _drain_backlogs(user, photos, args.backlog, args.runs, batches, runtimes)
        return
    found.clear()
    results: dict[str, dict[str, list]] = {
        name: {"totals": [], "creates": [], "stages": []} for name in runtimes
    }
    for i in range(args.runs):
        for name, use in runtimes.items():  # side by side: each photo through every choice
            with use():
                create_ms, total_ms, timings = one(photos[i % len(photos)])
            results[name]["totals"].append(total_ms)
            results[name]["creates"].append(create_ms)
            results[name]["stages"].append(timings)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(f"# match latency, {platform.node()} ({os.cpu_count()} CPU, "
          f"torch threads {__import__('torch').get_num_threads()}), "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {_cpu_model()}")
    print(f"catalogue: {SKUImage.objects.count()} reference images; runs: {args.runs}; "
          f"jemalloc: {'jemalloc' in os.environ.get('LD_PRELOAD', '')}")
    print(f"photos: {photos[0].parent.parent.parent.name if args.grocery else 'demo'}; "
          f"box source: { {k: found.count(k) for k in sorted(set(found))} }")
    stage_medians: dict[str, dict[str, float]] = {}
    for name, result in results.items():
        totals, stages = result["totals"], result["stages"]
        # A stage that some photos skip (e.g. reading text) counts 0 ms for them.
        names = list(dict.fromkeys(stage for s in stages for stage in s))
        stage_medians[name] = {stage: median([s.get(stage, 0.0) for s in stages])
                               for stage in names}
        alone = stage_medians[name].get("detect", 0.0) + stage_medians[name].get("embed", 0.0)
        print(f"runtimes {name} ({runtimes[name].label}):")
        print(f"  upload -> stored candidates, one photo: median {median(totals):.1f} ms, "
              f"p90 {sorted(totals)[int(0.9 * len(totals)) - 1]:.1f} ms; "
              f"end to end / (detect + embed) = {median(totals) / alone:.2f}x")
        print(f"  validate + save photo + claim: median {median(result['creates']):.1f} ms")
        for stage, value in stage_medians[name].items():
            print(f"  {stage:<8} median {value:.1f} ms")
    names = list(results)
    for other in names[1:]:
        first = names[0]
        speedups = [
            f"{stage} {stage_medians[first][stage] / stage_medians[other][stage]:.2f}x"
            for stage in ("detect", "embed") if stage_medians[other].get(stage)
        ]
        end_to_end = median(results[first]["totals"]) / median(results[other]["totals"])
        print(f"{first} / {other}: {', '.join(speedups)}, end to end {end_to_end:.2f}x")


class _Runtime:
    """One choice of inference runtimes, loaded once; `with choice():` routes the gateway to it."""

    def __init__(self, label: str, detector: object, embedder: object) -> None:
        self.label, self.detector, self.embedder = label, detector, embedder

    def __call__(self):
        from unittest import mock

        from webapp.ml_gateway import runtime  # where the gateway looks both up

        stack = ExitStack()
        stack.enter_context(mock.patch.object(runtime, "detector", lambda: self.detector))
        stack.enter_context(
            mock.patch.object(runtime, "_embedder", lambda model_ref: self.embedder)
        )
        return stack


def _load_runtimes(names: list[str]) -> dict[str, _Runtime]:
    from django.conf import settings

    from webapp.ml_gateway import runtime

    defaults = (settings.DETECTOR_BACKEND, settings.EMBED_BACKEND)
    loaded = {}
    for name in names:
        detector_backend, embed_backend = {
            "today": ("ultralytics", "torch"), "auto": defaults,
        }.get(name) or tuple(name.split(":"))
        settings.DETECTOR_BACKEND, settings.EMBED_BACKEND = detector_backend, embed_backend
        runtime.detector.cache_clear()
        runtime._embedder.cache_clear()
        detector, embedder = runtime.detector(), runtime.embedder()
        label = (f"detector {getattr(detector, 'backend', 'none')}, "
                 f"embedding {embedder.backend}")
        loaded[name] = _Runtime(label, detector, embedder)
    settings.DETECTOR_BACKEND, settings.EMBED_BACKEND = defaults
    return loaded


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _drain_backlogs(
    user: object, photos: list[Path], backlog: int, rounds: int, batches: list[int],
    runtimes: dict[str, _Runtime],
) -> None:
    """Photos per second through the worker with a queue of `backlog` one-photo requests."""
    from unittest import mock

    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile

    from webapp.matching.models import MatchRequest
    from webapp.matching.requests import match_request_create
    from webapp.matching.runner import match_request_run

    def drain(batch: int) -> float:
        settings.MATCH_BATCH = batch
        with mock.patch("webapp.matching.requests._enqueue"):  # queued, not run on commit
            queued = [
                match_request_create(user=user, uploads=[SimpleUploadedFile(
                    path.name, path.read_bytes(), content_type="image/jpeg")])
                for path in (photos[i % len(photos)] for i in range(backlog))
            ]
        started = time.perf_counter()
        for request in queued:  # each request's own task, in queue order
            match_request_run(request_id=request.pk)
        seconds = time.perf_counter() - started
        done = MatchRequest.objects.filter(pk__in=[r.pk for r in queued], status="done").count()
        assert done == backlog, f"{backlog - done} requests did not finish"
        return backlog / seconds

    rates: dict[tuple[str, int], list[float]] = {
        (name, batch): [] for name in runtimes for batch in batches
    }
    for _ in range(rounds):
        for name, batch in rates:
            with runtimes[name]():
                rates[name, batch].append(drain(batch))
    print(f"# match throughput, {platform.node()} ({os.cpu_count()} CPU, "
          f"torch threads {__import__('torch').get_num_threads()}), "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {_cpu_model()}")
    print(f"backlog {backlog} one-photo requests, {rounds} rounds each, alternating; "
          f"photos: {'grocery val' if 'val' in str(photos[0]) else 'demo'}")
    medians = {key: statistics.median(values) for key, values in rates.items()}
    for (name, batch), values in rates.items():
        print(f"  runtimes {name} ({runtimes[name].label}), SKULENS_MATCH_BATCH={batch}: "
              f"median {medians[name, batch]:.2f} photos/s "
              f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
    first = next(iter(runtimes))
    for name, batch in rates:
        if (name, batch) != (first, batches[0]):
            print(f"  {name} batch {batch} / {first} batch {batches[0]}: "
                  f"{medians[name, batch] / medians[first, batches[0]]:.2f}x")


# COCO classes a grocery val photo of fruit or vegetables can show.
GROCERY_DETECTION_CLASSES = ["apple", "orange", "banana", "broccoli", "carrot"]


if __name__ == "__main__":
    main()
