#!/usr/bin/env bash
# Celery beat: the schedules in settings.CELERY_BEAT_SCHEDULE (index sync, calibration,
# retraining check, import clean-up). Run exactly one per deployment.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
var="${SKULENS_VAR_DIR:-$ROOT/var}"
mkdir -p "$var"
exec celery -A webapp.config beat --loglevel=INFO -s "$var/celerybeat-schedule" "$@"
