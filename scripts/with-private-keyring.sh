#!/usr/bin/env bash
# Runs a command inside a private D-Bus session with its own unlocked gnome-keyring (a real
# Secret Service), in a throwaway data folder, so nothing touches your own keychain.
#   scripts/with-private-keyring.sh COMMAND [ARGS...]
# Inside, KEYSWITCH_TEST_PRIVATE_BUS holds the private bus address: the integration tests
# refuse to run without it.
set -euo pipefail

missing=()
for tool in dbus-run-session dbus-send gnome-keyring-daemon secret-tool; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "with-private-keyring: missing ${missing[*]}: install them, e.g. sudo apt-get install dbus gnome-keyring libsecret-tools" >&2
    exit 1
fi
if [ $# -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

if [ -z "${KEYSWITCH_PRIVATE_BUS_CHILD:-}" ]; then
    # dbus-run-session starts a bus for this session only and stops it when the command ends.
    export KEYSWITCH_PRIVATE_BUS_CHILD=1
    exec dbus-run-session -- "$0" "$@"
fi
unset KEYSWITCH_PRIVATE_BUS_CHILD

sandbox=$(mktemp -d "${TMPDIR:-/tmp}/keyswitch-keyring.XXXXXX")
cleanup() {
    if [ -n "${GNOME_KEYRING_PID:-}" ]; then kill "$GNOME_KEYRING_PID" 2>/dev/null || true; fi
    rm -rf "$sandbox"
}
trap cleanup EXIT

# gnome-keyring keeps its keyrings under XDG_DATA_HOME and its sockets under XDG_RUNTIME_DIR.
export XDG_DATA_HOME="$sandbox/data" XDG_RUNTIME_DIR="$sandbox/run"
mkdir -p "$XDG_DATA_HOME"
mkdir -m 700 "$XDG_RUNTIME_DIR"
# --unlock reads the new login keyring's password from stdin and creates it unlocked.
eval "$(printf 'keyswitch-test' | gnome-keyring-daemon --unlock --daemonize --components=secrets)"
export GNOME_KEYRING_PID

# First wait until the daemon owns the Secret Service's bus name. A client asking earlier makes
# D-Bus start a second gnome-keyring, one whose keyring is locked and that asks for a password
# through a prompter that cannot run here; that one keeps the name and every probe below fails
# (on a loaded machine, most starts).
for _ in $(seq 1 100); do
    dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null \
        | grep -q 'boolean true' && break
    sleep 0.1
done

# Wait until the Secret Service answers a real round trip: store, then read back.
for _ in $(seq 1 100); do
    if printf 'probe' | secret-tool store --label=probe keyswitch-probe ready 2>/dev/null \
        && [ "$(secret-tool lookup keyswitch-probe ready 2>/dev/null)" = probe ]; then
        secret-tool clear keyswitch-probe ready
        export KEYSWITCH_TEST_PRIVATE_BUS="$DBUS_SESSION_BUS_ADDRESS"
        "$@"
        exit $?
    fi
    sleep 0.1
done
echo "with-private-keyring: the private Secret Service (gnome-keyring-daemon) did not answer within 10 s" >&2
exit 1
