#!/usr/bin/env bash
# The web app under gunicorn (webapp/config/gunicorn.py), static files by whitenoise.
# Settings come from the environment (README, "Production settings"). Used by the Procfile's
# `web` and by `make serve`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
exec gunicorn -c webapp/config/gunicorn.py "$@"
