#!/usr/bin/env bash
# The embedded default: SQLite, a filesystem Celery broker, and every process of the Procfile
# (web under gunicorn, the gpu and default workers, beat) under honcho. Ctrl-C stops them all.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
export SKULENS_VAR_DIR="${SKULENS_VAR_DIR:-$ROOT/var}"
export SKULENS_HOST="${SKULENS_HOST:-127.0.0.1}"
export SKULENS_PORT="${SKULENS_PORT:-8000}"
# One web worker is plenty for one person, and leaves the cores to the matching worker.
export WEB_CONCURRENCY="${WEB_CONCURRENCY:-1}"
mkdir -p "$SKULENS_VAR_DIR"
# Every process of this machine writes its metrics here; samples of an earlier run go.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$SKULENS_VAR_DIR/metrics}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

if [ "${SKULENS_RUN_SKIP_SETUP:-}" != "1" ]; then
  python manage.py migrate --no-input -v 0
  echo "Demo users (one per role):"
  python manage.py create_demo_users
  if ! python manage.py shell -c "from webapp.catalog.models import SKU; raise SystemExit(0 if SKU.objects.exists() else 1)"; then
    python manage.py load_demo_catalogue
  fi
  python manage.py build_index
fi

echo
echo "SKU Lens is starting at http://$SKULENS_HOST:$SKULENS_PORT/  (log in with a demo user above; Ctrl-C stops)"
echo "Sample photos to upload: $SKULENS_VAR_DIR/demo/photos/"
echo "Processes (Procfile): web, gpu, default, beat; their output follows, one prefix each."
# honcho gives each process type a PORT counting up from -p; only `web` listens on it.
exec honcho start -f Procfile -d "$ROOT" -p "$SKULENS_PORT" "$@"
