#!/usr/bin/env bash
# Benchmarks print their numbers with the machine and date; record them in docs/benchmarks.md.
# Pass --quick for a short smoke run.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
runs=30
[ "${1:-}" = "--quick" ] && runs=5
grocery="$ROOT/../shared/data/grocery"
for threads in 1 2; do
  python bench/match_latency.py --runs "$runs" --threads "$threads"
  # Every stage (detection finds the item, GrabCut segments it) needs real photos.
  if [ -d "$grocery" ]; then
    # today's runtimes (ultralytics + LiteRT, PyTorch) and the defaults, side by side
    python bench/match_latency.py --runs "$runs" --threads "$threads" --grocery "$grocery" \
      --runtimes today,auto
  fi
done
if [ -d "$grocery" ]; then
  # Every runtime against its reference, and GrabCut's variants (~10 min on 2 quiet cores).
  quick=()
  [ "${1:-}" = "--quick" ] && quick=(--quick)
  python bench/inference_backends.py --grocery "$grocery" "${quick[@]}"
  python bench/segmentation.py --grocery "$grocery" "${quick[@]}"
  python bench/match_latency.py --grocery "$grocery" --backlog 24 --runs 3 --runtimes today,auto
fi
# The search index at a million vectors (~12 min on 2 cores; --quick: 100k vectors, ~2 min).
index_args=()
[ "${1:-}" = "--quick" ] && index_args=(--quick)
python bench/index_scale.py "${index_args[@]}"
# Retrieval quality on grocery val (~5 min: embeds 3,017 images).
if [ -d "$grocery" ] && [ "${1:-}" != "--quick" ]; then
  python bench/quality.py --grocery "$grocery"
fi
