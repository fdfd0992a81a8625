#!/usr/bin/env bash
# The project's test command: runs every test against a real Secret Service.
#
# It starts a private D-Bus session with its own, unlocked gnome-keyring, in a throwaway HOME,
# so the tests never touch your own keychain, config or state; then runs `cargo test` inside it
# and everything it was given as arguments is passed on to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in dbus-run-session gnome-keyring-daemon secret-tool; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: missing ${missing[*]}: install them, e.g. sudo apt-get install dbus gnome-keyring libsecret-tools" >&2
    exit 1
fi

if [ "${1:-}" != "--inside-private-bus" ]; then
    exec dbus-run-session -- "$0" --inside-private-bus "$@"
fi
shift

sandbox=$(mktemp -d "${TMPDIR:-/tmp}/keyswitch-test.XXXXXX")
cleanup() {
    [ -n "${keyring_pid:-}" ] && kill "$keyring_pid" 2>/dev/null || true
    rm -rf "$sandbox"
}
trap cleanup EXIT

# gnome-keyring keeps its keyrings under XDG_DATA_HOME: point it into the sandbox.
export XDG_DATA_HOME="$sandbox/data" XDG_RUNTIME_DIR="$sandbox/run"
mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
# --unlock reads the new login keyring's password from stdin, creating it unlocked.
eval "$(printf 'keyswitch-test' | gnome-keyring-daemon --unlock --daemonize --components=secrets)"
keyring_pid=${GNOME_KEYRING_PID:-}

# Wait until the Secret Service answers a real round trip (store, then read back).
ready=
for _ in $(seq 1 50); do
    if printf 'probe' | secret-tool store --label=probe keyswitch-probe ready \
        && [ "$(secret-tool lookup keyswitch-probe ready 2>/dev/null)" = probe ]; then
        ready=yes
        break
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "test.sh: the private Secret Service did not come up (gnome-keyring-daemon)" >&2
    exit 1
fi
secret-tool clear keyswitch-probe ready

# The integration tests refuse to run without this, so a bare `cargo test` can never reach the
# user's own keychain.
export KEYSWITCH_TEST_PRIVATE_BUS="$DBUS_SESSION_BUS_ADDRESS"
cargo test "$@"
