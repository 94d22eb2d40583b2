# Sourced by the other scripts: a project-local Python venv with pinned tools, and moto.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.venv"

# usage: ensure_venv scripts/requirements-<what>.txt
ensure_venv() {
    local requirements="$repo_root/$1"
    local stamp="$venv/.installed-$(basename "$requirements")"
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "creating $venv" >&2
        python3 -m venv "$venv"
    fi
    if ! cmp -s "$requirements" "$stamp"; then
        echo "installing $(basename "$requirements") into $venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$stamp"
    fi
    export PATH="$venv/bin:$PATH"
}

# Starts moto on a free loopback port, exports COUNTERCTL_TEST_MOTO_URL, and stops it
# when the calling script exits.
start_moto() {
    ensure_venv scripts/requirements-test.txt
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    moto_log="$(mktemp -t moto.XXXXXX.log)"
    python3 "$repo_root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
    moto_pid=$!
    trap 'kill "$moto_pid" 2>/dev/null; wait "$moto_pid" 2>/dev/null; rm -f "$moto_log"' EXIT
    export COUNTERCTL_TEST_MOTO_URL="http://127.0.0.1:$port"
    for _ in $(seq 150); do
        python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1])" \
            "$COUNTERCTL_TEST_MOTO_URL/moto-api/" 2>/dev/null && return 0
        if ! kill -0 "$moto_pid" 2>/dev/null; then
            cat "$moto_log" >&2
            echo "moto did not start" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "moto did not answer on $COUNTERCTL_TEST_MOTO_URL" >&2
    return 1
}
