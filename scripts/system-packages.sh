#!/usr/bin/env bash
# Installs the Debian packages a `make` target needs, only those missing, quietly, and says in one
# line what it installs and why. Called by the Makefile; idempotent (a second call installs nothing).
#
#   scripts/system-packages.sh venv   python3.11-venv when the interpreter cannot create a venv
#   scripts/system-packages.sh test   postgresql    server binaries for the Dagster-on-PostgreSQL tests
#                                     chromium      /usr/bin/chromium, driven by Playwright in the UI test
#                                     redis-server  the broker of the Celery-executor test
#
# Needs root or sudo only when something is missing; apt-get's output is shown only if it fails.
set -euo pipefail

python="${PYTHON:-python3.11}"
missing=()
why=()
case "${1:-}" in
    venv)
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
            missing+=(python3.11-venv); why+=("python3.11-venv (to create .venv)")
        fi
        ;;
    test)
        if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
            missing+=(postgresql); why+=("postgresql (server binaries: the tests run Dagster on a real PostgreSQL)")
        fi
        if [ ! -x /usr/bin/chromium ]; then
            missing+=(chromium); why+=("chromium (the UI test drives a real browser)")
        fi
        if [ ! -x /usr/bin/redis-server ]; then
            missing+=(redis-server); why+=("redis-server (the Celery executor's broker in its end-to-end test)")
        fi
        ;;
    *)
        echo "usage: $0 venv|test" >&2
        exit 2
        ;;
esac

[ ${#missing[@]} -eq 0 ] && exit 0

joined="$(printf '%s; ' "${why[@]}")"
echo "make: installing missing system packages with apt-get: ${joined%; }"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
        echo "make: need root or sudo to install ${missing[*]}; run: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi
if ! command -v apt-get >/dev/null; then
    echo "make: no apt-get on this machine; install ${missing[*]} (Debian/Ubuntu package names) yourself" >&2
    exit 1
fi
started=$SECONDS
log="$(mktemp)"
if ! { "${sudo[@]}" apt-get update -qq \
       && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
              apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    echo "make: apt-get failed installing ${missing[*]}; its output:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
echo "make: installed ${missing[*]} in $((SECONDS - started)) s"
