#!/usr/bin/env bash
# The embedded default: SQLite, a filesystem Celery broker, a worker and the web server.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
export DJANGO_DEBUG="${DJANGO_DEBUG:-true}"
export SKULENS_VAR_DIR="${SKULENS_VAR_DIR:-$ROOT/var}"
HOST="${SKULENS_HOST:-127.0.0.1}"
PORT="${SKULENS_PORT:-8000}"
mkdir -p "$SKULENS_VAR_DIR"

python manage.py migrate --no-input -v 0
echo "Demo users (one per role):"
python manage.py create_demo_users
if ! python manage.py shell -c "from webapp.catalog.models import SKU; raise SystemExit(0 if SKU.objects.exists() else 1)"; then
  python manage.py load_demo_catalogue
fi
python manage.py build_index

worker_log="$SKULENS_VAR_DIR/worker.log"
celery -A webapp.config worker -Q gpu,default --pool=solo --concurrency=1 \
  --prefetch-multiplier=1 -n "skulens@%h" --loglevel=INFO >"$worker_log" 2>&1 &
worker_pid=$!
trap 'kill $worker_pid 2>/dev/null || true; wait $worker_pid 2>/dev/null || true' EXIT INT TERM
echo "Celery worker started (pid $worker_pid, log $worker_log)"
echo
echo "SKU Lens is running at http://$HOST:$PORT/  (log in with a demo user above; Ctrl-C stops)"
echo "Sample photos to upload: $SKULENS_VAR_DIR/demo/photos/"
python manage.py runserver "$HOST:$PORT" --noreload
