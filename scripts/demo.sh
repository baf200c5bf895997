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

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- Python and the virtualenv -------------------------------------------------------------------

is_modern_python() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

if [ ! -x .venv/bin/python ]; then
    PYTHON=""
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_modern_python "$candidate"; then
            PYTHON="$candidate"
            break
        fi
    done
    [ -n "$PYTHON" ] || die "Python 3.11 or newer is needed (tried python3.13 ... python3)."
    say "Creating .venv with $PYTHON ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv .venv
fi
PY="$PWD/.venv/bin/python"
is_modern_python "$PY" || die ".venv does not hold Python 3.11 or newer: delete it and run again."

STAMP=.venv/.demo-installed
if [ "$STAMP" -nt pyproject.toml ]; then
    say "Dependencies already installed (delete $STAMP to reinstall)"
else
    say "Installing django-webhooks and the demo's dependencies into .venv (a minute or so)"
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".[demo]"
    touch "$STAMP"
fi

export DJANGO_SETTINGS_MODULE=example_project.settings
export PYTHONUNBUFFERED=1

# --- database and demo data ----------------------------------------------------------------------

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
    say "Smoke test: one order, one verified webhook"
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
