#!/usr/bin/env bash
# Production web server: migrate, collect static files, then gunicorn (scripts/web.sh).
# Needs DJANGO_SECRET_KEY (or _FILE), DATABASE_URL, CELERY_BROKER_URL, DJANGO_ALLOWED_HOSTS.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
python manage.py migrate --no-input
python manage.py collectstatic --no-input -v 0
exec bash scripts/web.sh "$@"
