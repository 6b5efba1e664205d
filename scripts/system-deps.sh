#!/usr/bin/env bash
# Debian packages the test suite needs: Chromium (browser tests), Redis (Celery broker),
# jemalloc (fast torch), PostgreSQL 15 (the production database). Installs only what is missing.
# `system-deps.sh run`: only what `make run` needs on embedded defaults (jemalloc), and a
# warning instead of a failure when it cannot be installed (the app runs, torch is slower).
set -euo pipefail
mode=${1:-test}
need=()
[ -f /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || need+=(libjemalloc2)
if [ "$mode" != run ]; then
  command -v chromium >/dev/null || need+=(chromium)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v pg_ctlcluster >/dev/null || need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (run as root, or install them)" >&2
    [ "$mode" = run ] && exit 0
    exit 1
  fi
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
