"""Per-photo latency from upload to stored candidates, on this machine.

Runs the real path in one process: validation and storage (match_request_create), whose commit
runs the match task eagerly (load, embed, search, fuse, store). Time spent waiting in a broker
queue is excluded. Usage:

    python bench/match_latency.py [--runs 30] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
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
    from webapp.catalog.models import SKUImage
    from webapp.matching.models import MatchRequest
    from webapp.matching.services import match_request_create

    call_command("migrate", verbosity=0)
    call_command("load_demo_catalogue", verbosity=0)
    call_command("build_index", verbosity=0)
    user = user_create_with_role(username="bench", password="bench-bench", role=Role.APPRAISER)
    photos = sorted((var / "demo" / "photos").glob("*.jpg"))

    def one(path: Path) -> tuple[float, float, dict[str, float]]:
        upload = SimpleUploadedFile(path.name, path.read_bytes(), content_type="image/jpeg")
        started = time.perf_counter()
        request = match_request_create(user=user, uploads=[upload])  # the task runs on commit
        total_ms = (time.perf_counter() - started) * 1000
        done = MatchRequest.objects.get(pk=request.pk)
        assert done.status == MatchRequest.Status.DONE, done.error
        return total_ms - sum(done.timings_ms.values()), total_ms, done.timings_ms

    one(photos[0])  # warm-up: model and index load once per process
    totals, creates, stages = [], [], []
    for i in range(args.runs):
        create_ms, total_ms, timings = one(photos[i % len(photos)])
        totals.append(total_ms)
        creates.append(create_ms)
        stages.append(timings)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(f"# match latency, {platform.node()} ({os.cpu_count()} CPU, "
          f"torch threads {__import__('torch').get_num_threads()}), "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"catalogue: {SKUImage.objects.count()} reference images; runs: {args.runs}; "
          f"jemalloc: {'jemalloc' in os.environ.get('LD_PRELOAD', '')}")
    print(f"upload -> stored candidates, one photo: median {median(totals):.1f} ms, "
          f"p90 {sorted(totals)[int(0.9 * len(totals)) - 1]:.1f} ms")
    print(f"  validate + save photo + claim: median {median(creates):.1f} ms")
    for stage in stages[0]:
        print(f"  {stage:<8} median {median([s[stage] for s in stages]):.1f} ms")


if __name__ == "__main__":
    main()
