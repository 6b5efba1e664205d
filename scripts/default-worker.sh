#!/usr/bin/env bash
# A worker on the `default` queue: light jobs (threshold calibration, import clean-up).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec celery -A webapp.config worker -Q default --pool=solo --concurrency=1 \
  --prefetch-multiplier=1 -n "default@%h" --loglevel=INFO "$@"
