# Sourced by demo.sh and test.sh: find Python 3.11+, create .venv, install an extra once.
#   ensure_venv EXTRA   -> sets $PY to .venv/bin/python with ".[EXTRA]" installed
# The install is redone when pyproject.toml is newer than the extra's stamp file.

_say() { printf '==> %s\n' "$*"; }
_die() { printf 'error: %s\n' "$*" >&2; exit 1; }
_is_modern_python() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }

ensure_venv() {
    local extra="$1" stamp
    if [ ! -x .venv/bin/python ]; then
        local candidate python=""
        for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 && _is_modern_python "$candidate"; then
                python="$candidate"
                break
            fi
        done
        [ -n "$python" ] || _die "Python 3.11 or newer is needed (tried python3.13 ... python3)."
        _say "Creating .venv with $python ($("$python" --version 2>&1))"
        "$python" -m venv .venv
    fi
    PY="$PWD/.venv/bin/python"
    _is_modern_python "$PY" || _die ".venv does not hold Python 3.11 or newer: delete it, run again."
    stamp=".venv/.installed-$extra"
    if [ "$stamp" -nt pyproject.toml ]; then
        _say "Dependencies ($extra) already installed (delete $stamp to reinstall)"
    else
        _say "Installing django-webhooks[$extra] into .venv"
        "$PY" -m pip install --quiet --disable-pip-version-check -e ".[$extra]"
        touch "$stamp"
    fi
}
