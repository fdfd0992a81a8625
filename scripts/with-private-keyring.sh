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

# Wait until our daemon owns the Secret Service name before calling it. A call made earlier makes
# the bus start another gnome-keyring from its service file, one that sees neither this folder nor
# the unlocked keyring, and prompts (seen on a busy machine, where --daemonize returns early).
owned=
for _ in $(seq 1 300); do
    if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; then
        owned=1
        break
    fi
    sleep 0.1
done
if [ -z "$owned" ]; then
    echo "with-private-keyring: the private gnome-keyring-daemon did not register on the bus within 30 s" >&2
    exit 1
fi
# A daemon that printed no pid (it may print nothing when --daemonize returns early) is still
# ours to stop at the end: ask the bus which process owns the name.
if [ -z "${GNOME_KEYRING_PID:-}" ]; then
    GNOME_KEYRING_PID=$(dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.GetConnectionUnixProcessID string:org.freedesktop.secrets 2>/dev/null \
        | sed -n 's/^ *uint32 \([0-9][0-9]*\)$/\1/p')
fi

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
