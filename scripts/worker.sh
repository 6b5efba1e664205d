#!/usr/bin/env bash
# A GPU worker: consumes the gpu queue one task at a time (CUDA cannot fork).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec celery -A webapp.config worker -Q gpu --pool=solo --concurrency=1 --prefetch-multiplier=1 \
  -n "gpu@%h" --loglevel=INFO "$@"
