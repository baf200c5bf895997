#!/usr/bin/env bash
# Run the curl walkthrough of docs/api.md as written, against the demo site, and check it:
#
#   ./scripts/api_walkthrough.sh
#
# It starts ./scripts/demo.sh in the background on a free port (with a fresh SQLite database,
# var/walkthrough.sqlite3, unless DATABASE_URL names another one), runs the commands between the
# <!-- walkthrough:start --> and <!-- walkthrough:end --> markers of docs/api.md in bash, and
# fails when a request answers 4xx/5xx or another status than the "# → NNN" comment under it
# says, or when a test event it sent did not reach the demo receiver with a verified signature.
# The docs are the script: they cannot drift from what CI runs. Stops the demo when done.
set -euo pipefail
cd "$(dirname "$0")/.."

DOC=docs/api.md
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
say() { _say "$@"; }
die() { _die "$@"; }

ensure_venv demo
export DJANGO_SETTINGS_MODULE=example_project.settings
if [ -z "${DATABASE_URL:-}" ]; then
    mkdir -p var
    rm -f var/walkthrough.sqlite3 var/walkthrough.sqlite3-*
    export DATABASE_URL="sqlite:///$PWD/var/walkthrough.sqlite3"
fi
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export PORT

WORK="$(mktemp -d)"
DEMO_PID=""
finish() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$DEMO_PID" ] && kill -0 "$DEMO_PID" 2>/dev/null; then
        kill -TERM "$DEMO_PID" 2>/dev/null || true
        wait "$DEMO_PID" 2>/dev/null || true
    fi
    if [ "$status" != 0 ] && [ -s "$WORK/demo.log" ]; then
        echo "--- the demo's output (last 60 lines) ---" >&2
        tail -n 60 "$WORK/demo.log" >&2
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the walkthrough, from the docs ---------------------------------------------------------------

# The fenced block between the markers; under each "# → NNN" comment, a check of that status.
awk '
    /<!-- walkthrough:start -->/ { inside = 1; next }
    /<!-- walkthrough:end -->/ { inside = 0 }
    inside && !/^```/ {
        print
        line = $0
        if (sub(/^# → /, "", line) && line ~ /^[0-9][0-9][0-9]/) print "expect_status " substr(line, 1, 3)
    }
' "$DOC" > "$WORK/steps.sh"
[ -s "$WORK/steps.sh" ] || die "no walkthrough between the markers in $DOC"
grep -q '^expect_status ' "$WORK/steps.sh" || die "no '# → NNN' status in the walkthrough"

# Run by bash with curl wrapped: every answer is shown, its status recorded and checked.
cat > "$WORK/walkthrough.sh" <<'EOF'
set -euo pipefail
STEPS="$WORK/statuses"
: > "$STEPS"
curl() {
    local out code
    out="$(command curl --show-error --write-out '\n%{http_code}' "$@")" || {
        echo "FAILED: curl $* did not get an answer" >&2; return 1; }
    code="${out##*$'\n'}"
    printf '%s\n' "${out%$'\n'*}"
    printf '%s %s\n' "$code" "$*" >> "$STEPS"
    printf '    [HTTP %s] curl %s\n' "$code" "$*" >&2
    if [ "$code" -ge 400 ]; then
        echo "FAILED: HTTP $code from: curl $*" >&2
        return 1
    fi
}
expect_status() {
    local last
    last="$(tail -n 1 "$STEPS")"
    if [ "${last%% *}" != "$1" ]; then
        echo "FAILED: the docs say HTTP $1 here, the demo answered: ${last:-nothing}" >&2
        exit 1
    fi
}
EOF
cat "$WORK/steps.sh" >> "$WORK/walkthrough.sh"

# --- the demo -------------------------------------------------------------------------------------

started=$SECONDS
say "Starting the demo on port $PORT (${DATABASE_URL%%\?*})"
./scripts/demo.sh > "$WORK/demo.log" 2>&1 &
DEMO_PID=$!
ready=0
for _ in $(seq 1 240); do
    kill -0 "$DEMO_PID" 2>/dev/null || die "the demo stopped before it was ready"
    if grep -q "^==> Running" "$WORK/demo.log" && [ "$(command curl -s -o /dev/null \
            -w '%{http_code}' -u alice:alice "http://127.0.0.1:$PORT/api/webhooks/event-types/")" = 200 ]; then
        ready=1
        break
    fi
    sleep 0.5
done
[ "$ready" = 1 ] || die "the demo was not ready within 120 seconds"
say "Demo ready in $((SECONDS - started))s"

since="$("$PY" -c 'from datetime import UTC, datetime; print(datetime.now(UTC).isoformat())')"
started=$SECONDS
say "Running the walkthrough of $DOC ($(grep -c '^expect_status ' "$WORK/steps.sh") checked statuses)"
WORK="$WORK" timeout 120 bash "$WORK/walkthrough.sh" > "$WORK/walkthrough.out" || {
    status=$?
    cat "$WORK/walkthrough.out"
    die "the walkthrough failed (exit $status; see above)"
}
requests="$(wc -l < "$WORK/statuses")"
say "Walkthrough passed: $requests requests in $((SECONDS - started))s, every status as documented"

say "Checking that its test events reached the receiver verified"
"$PY" manage.py demo_check_received --since "$since" --at-least 2
say "API walkthrough OK"
