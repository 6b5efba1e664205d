#!/usr/bin/env bash
# Start PostgreSQL and Redis on loopback for the tests, and print the URLs to export.
set -euo pipefail
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' >/dev/null
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1" "$2}')
if [ -z "$cluster" ]; then
  pg_createcluster 15 main >/dev/null
  cluster="15 main"
fi
pg_ctlcluster $cluster start >/dev/null 2>&1 || true
for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='skulens'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE skulens LOGIN CREATEDB PASSWORD 'skulens'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='skulens'\"" | grep -q 1 ||
  su postgres -c "createdb -O skulens skulens"
echo "export DATABASE_URL=postgres://skulens:skulens@127.0.0.1:5432/skulens"
# A preset URL wins, so that two suites on one machine can use separate Redis databases.
echo "export SKULENS_TEST_REDIS_URL=${SKULENS_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
