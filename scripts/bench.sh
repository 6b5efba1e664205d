#!/usr/bin/env bash
# Benchmarks print their numbers with the machine and date; record them in docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
python bench/match_latency.py "$@"
