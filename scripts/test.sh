#!/usr/bin/env bash
# Run the test suite from a fresh clone, in one command (extra arguments go to pytest):
#
#   ./scripts/test.sh                 # SQLite + django-q2's ORM broker (no server needed)
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
#   REDIS_URL=redis://127.0.0.1:6379/0 ./scripts/test.sh    # PostgreSQL + Redis broker
#   ./scripts/test.sh -m "not e2e"    # quicker: skip the tests that start real qcluster processes
#
# With no arguments it runs everything, end-to-end tests included (CI calls it so).
# It creates .venv (Python 3.11+) and installs the package with its test tools on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
ensure_venv dev
_say "pytest on ${DATABASE_URL:-SQLite}${REDIS_URL:+ with the Redis broker}"
exec "$PY" -m pytest "$@"
