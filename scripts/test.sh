#!/usr/bin/env bash
# The whole suite: ml unit tests, Django on PostgreSQL, a real Celery worker over Redis,
# and Chromium browser tests. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
if [ -z "${SKULENS_SKIP_SERVICES:-}" ]; then
  eval "$(bash scripts/services.sh)"
fi
export DJANGO_DEBUG=false DJANGO_SECRET_KEY=test-only-secret
# Production settings, except that the tests serve static files unhashed (no collectstatic).
export SKULENS_STATIC_MANIFEST="${SKULENS_STATIC_MANIFEST:-false}"
export SKULENS_VAR_DIR="${SKULENS_VAR_DIR:-$(mktemp -d /tmp/skulens-test.XXXXXX)}"
export DJANGO_ALLOW_ASYNC_UNSAFE=true
export SKULENS_TEST_DB_NAME="${SKULENS_TEST_DB_NAME:-test_skulens_$$}"
echo "database: ${DATABASE_URL:-sqlite (embedded)}; var: $SKULENS_VAR_DIR"
set +e
python -m pytest "$@"
status=$?
set -e
# pytest exits 5 when a selection ran no test; that is not a failure of the suite.
[ $status -eq 5 ] && status=0
exit $status
