#!/usr/bin/env bash
# Set up and run the django-webhooks demo site, from a fresh clone, in one command:
#
#   ./scripts/demo.sh            # then open http://127.0.0.1:8000/ (Ctrl-C stops everything)
#   ./scripts/demo.sh --smoke    # CI: start everything, check one webhook end to end, stop
#
# Environment: PORT (default 8000); DATABASE_URL, REDIS_URL and the rest are read by
# example_project/settings.py.
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
SMOKE=0
if [ "${1:-}" = "--smoke" ]; then
    SMOKE=1
elif [ -n "${1:-}" ]; then
    echo "usage: $0 [--smoke]" >&2
    exit 2
fi

# shellcheck source=scripts/venv.sh
. scripts/venv.sh
say() { _say "$@"; }
die() { _die "$@"; }

ensure_venv demo  # its PostgreSQL driver too, for a postgres:// DATABASE_URL

export DJANGO_SETTINGS_MODULE=example_project.settings
export PYTHONUNBUFFERED=1

# --- database and demo data ----------------------------------------------------------------------

# Organizations own the demo's webhooks (WEBHOOKS_OWNER_MODEL), chosen before the first migrate:
# a demo database made by an older demo (webhooks owned by users) is dropped and made again.
say "Checking the demo database"
"$PY" manage.py demo_reset_if_stale
say "Migrating the database"
"$PY" manage.py migrate --noinput
say "Creating the demo data"
"$PY" manage.py demo_setup --port "$PORT"

# --- the site and the task queue -----------------------------------------------------------------

SERVER_PID=""
CLUSTER_PID=""
stop() {
    trap - EXIT INT TERM
    for pid in $CLUSTER_PID $SERVER_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $CLUSTER_PID $SERVER_PID; do
        wait "$pid" 2>/dev/null || true
    done
}
trap 'status=$?; say "Stopping"; stop; exit $status' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Starting the web server on http://127.0.0.1:$PORT/"
"$PY" manage.py runserver "127.0.0.1:$PORT" --noreload &
SERVER_PID=$!

# Wait until it answers (through no proxy), so that the first webhooks find their receiver.
ready=0
for _ in $(seq 1 60); do
    kill -0 "$SERVER_PID" 2>/dev/null || die "the web server did not start (is port $PORT in use?)"
    if "$PY" - "$PORT" <<'EOF' 2>/dev/null
import sys
import urllib.request

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
opener.open(f"http://127.0.0.1:{sys.argv[1]}/receiver/", timeout=2)
EOF
    then
        ready=1
        break
    fi
    sleep 0.5
done
[ "$ready" = 1 ] || die "the web server did not answer on port $PORT within 30 seconds"

say "Starting the task queue (python manage.py qcluster)"
"$PY" manage.py qcluster &
CLUSTER_PID=$!

if [ "$SMOKE" = 1 ]; then
    say "Smoke test: an organization's order reaches its endpoint and the site-wide one, not the other's"
    set +e
    "$PY" manage.py demo_smoke
    result=$?
    set -e
    if [ "$result" = 0 ]; then say "Smoke test passed"; else say "Smoke test FAILED"; fi
    exit "$result"
fi

say "Running. Open http://127.0.0.1:$PORT/ (admin: admin / admin). Ctrl-C stops everything."
while kill -0 "$SERVER_PID" 2>/dev/null && kill -0 "$CLUSTER_PID" 2>/dev/null; do
    sleep 1
done
die "the web server or the task queue stopped unexpectedly (see above)"
