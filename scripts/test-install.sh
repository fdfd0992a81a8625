#!/usr/bin/env bash
# Tests the ways to install keyswitch, as a user meets them, each with a throwaway HOME and
# CLAUDE_CONFIG_DIR, against a private Secret Service (with-private-keyring.sh):
# - a release archive's install.sh, on a PATH without cargo: installs the binary that came in
#   the archive, wires Claude Code, prints next steps that work as printed; refuses a damaged
#   binary; --uninstall undoes it; --uninstall --purge [--yes] deletes the keys, config and
#   state before the binary;
# - the npm packages, packed here and installed offline (`npm install -g --offline`) into a
#   throwaway prefix: `--version`, `install`, `add` and `get` through the launcher, which must pass
#   stdin, stdout and the exit status through and wire the native binary, not itself;
# - a source checkout's install.sh: builds with cargo, and without cargo says how to get it.
# The archive and the npm packages come from `scripts/release.sh --host`, which packs
# target/release (CI's benchmark built it already); with --dist, the dist/ of a full
# scripts/release.sh is tested as it is. Also times `get` through the npm launcher
# against the binary itself (informational).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
    command -v npm >/dev/null || { echo "test-install: needs npm (apt-get install npm)" >&2; exit 1; }
    command -v python3 >/dev/null || { echo "test-install: needs python3" >&2; exit 1; }
    # --dist: test the dist/ a full scripts/release.sh made (the musl archive) as it is.
    if [ "${1:-}" = "--dist" ]; then
        ls dist/keyswitch-*.tar.gz >/dev/null || { echo "test-install: no dist/: run scripts/release.sh" >&2; exit 1; }
    else
        scripts/release.sh --host >/dev/null
    fi
    # The private gnome-keyring sometimes fails to start on a loaded machine (with-private-keyring
    # gives up before running anything): start it again rather than fail the checks unrun.
    started=$(mktemp)
    for attempt in 1 2 3; do
        rm -f "$started"
        status=0
        scripts/with-private-keyring.sh "$0" --inside "$started" || status=$?
        if [ -e "$started" ] || [ "$attempt" = 3 ]; then
            rm -f "$started"
            exit "$status"
        fi
        echo "test-install: the private keyring did not start; trying again" >&2
    done
fi
touch "$2" # tells the caller the private keyring started

repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
npm_name=${KEYSWITCH_NPM_NAME:-@keyswitch/cli}
failures=0
ok() { echo "ok    $*"; }
fail() {
    echo "FAIL  $*" >&2
    failures=$((failures + 1))
}
check() { # check DESCRIPTION COMMAND...: passes when the command succeeds
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

# A PATH a user without Rust has: the system folders that hold no cargo, plus node's.
nocargo=
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin "$(dirname "$(command -v node)")"; do
    [ -d "$d" ] && [ ! -e "$d/cargo" ] && [ ! -e "$d/rustc" ] && nocargo+="${nocargo:+:}$d"
done
if PATH=$nocargo command -v cargo >/dev/null; then
    echo "test-install: cannot make a PATH without cargo here" >&2
    exit 1
fi

# Runs a command as a fresh user: only HOME (fresh per user), PATH and the private session bus.
as_user() { # as_user HOME PATH COMMAND...
    local home=$1 path=$2
    shift 2
    env -i HOME="$home" CLAUDE_CONFIG_DIR="$home/.claude" PATH="$path" LANG=C.UTF-8 \
        DBUS_SESSION_BUS_ADDRESS="$DBUS_SESSION_BUS_ADDRESS" XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR" \
        "$@"
}
lacks() { ! grep -q -- "$1" <<<"$2"; }
new_home() { mkdir -p "$work/$1" && echo "$work/$1"; }
helper_of() { # the apiKeyHelper in a user's settings
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("apiKeyHelper", ""))' "$1/.claude/settings.json"
}
secret() { echo "sk-ant-test-$1-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"; }

echo "== release archive, no cargo on PATH"
archive=$(ls dist/keyswitch-"$version"-*.tar.gz)
tar -xzf "$archive" -C "$work"
unpacked="$work/$(basename "$archive" .tar.gz)"
check "the archive holds the binary, README, LICENSE, CHANGELOG, install.sh, SHA256SUMS" \
    test "$(cd "$unpacked" && ls | tr '\n' ' ')" = "CHANGELOG.md LICENSE README.md SHA256SUMS install.sh keyswitch "
check "the archive's SHA256SUMS match" sh -c "cd '$unpacked' && sha256sum -c --quiet SHA256SUMS"

home=$(new_home archive)
out=$(as_user "$home" "$nocargo" "$unpacked/install.sh" 2>&1) || { echo "$out"; fail "install.sh from the archive exits 0"; }
bin="$home/.local/bin/keyswitch"
check "install.sh installs the archive's binary to ~/.local/bin" cmp -s "$bin" "$unpacked/keyswitch"
check "Claude Code's apiKeyHelper runs the installed binary" test "$(helper_of "$home")" = "$bin get"
nexts=$(grep -ci 'next' <<<"$out" || true)
check "one set of next steps (found $nexts)" test "$nexts" = 1
check "no placeholder endpoint in the next steps" lacks example.com "$out"
# ~/.local/bin is not on this user's PATH, so the printed command must be the full path.
add=$(sed -n 's/.*`\([^`]* add primary\)`.*/\1/p' <<<"$out")
key=$(secret archive)
check "the printed add command works as printed: $add" \
    as_user "$home" "$nocargo" sh -c "printf '%s' '$key' | $add"
# Proxy mode, the default: a session talking to the proxy gets its token, never the key, and
# the proxy (started by install or by that get) puts the key on its requests.
check "install.sh wires proxy mode: Claude Code talks to the proxy on the default port" \
    grep -q '"ANTHROPIC_BASE_URL": "http://127.0.0.1:27329"' "$home/.claude/settings.json"
token=$(as_user "$home" "$nocargo" env ANTHROPIC_BASE_URL=http://127.0.0.1:27329 "$bin" get 2>/dev/null)
check "get hands a session of the proxy its token, not the key" \
    sh -c "case '$token' in ksp-*) true ;; *) false ;; esac"
out=$(as_user "$home" "$home/.local/bin:$nocargo" "$unpacked/install.sh" 2>&1)
check "run again with keyswitch on PATH, the next step is a bare 'keyswitch doctor'" \
    grep -q '`keyswitch doctor`' <<<"$out"
check "doctor finds this keyswitch on PATH" \
    grep -q '^ok    keyswitch is on PATH' <<<"$(as_user "$home" "$home/.local/bin:$nocargo" keyswitch doctor 2>&1)"
as_user "$home" "$nocargo" "$bin" remove primary 2>/dev/null
as_user "$home" "$nocargo" "$unpacked/install.sh" --uninstall >/dev/null 2>&1
check "install.sh --uninstall deletes the binary" test ! -e "$bin"
check "install.sh --uninstall takes keyswitch out of the settings" test ! -e "$home/.claude/settings.json"
check "install.sh --uninstall stops the proxy" \
    python3 -c 'import socket; socket.create_server(("127.0.0.1", 27329)).close()'

home=$(new_home purge)
as_user "$home" "$nocargo" "$unpacked/install.sh" --helper >/dev/null 2>&1
bin="$home/.local/bin/keyswitch"
as_user "$home" "$nocargo" sh -c "printf '%s' '$(secret purge)' | '$bin' add purged-key" 2>/dev/null
lookup() { as_user "$home" "$nocargo" secret-tool lookup service keyswitch username purged-key 2>/dev/null || true; }
check "a key to purge is in the keychain" test -n "$(lookup)"
out=$(as_user "$home" "$nocargo" "$unpacked/install.sh" --uninstall --purge </dev/null 2>&1) \
    && fail "install.sh --uninstall --purge without a terminal or --yes exits non-zero"
check "... says to add --yes" grep -q 'add --yes' <<<"$out"
check "... and keeps the binary and the key" sh -c "[ -x '$bin' ] && [ -n \"\$1\" ]" _ "$(lookup)"
out=$(as_user "$home" "$nocargo" "$unpacked/install.sh" --uninstall --purge --yes </dev/null 2>&1) \
    || { echo "$out"; fail "install.sh --uninstall --purge --yes exits 0"; }
check "install.sh --uninstall --purge --yes deletes the key from the keychain" test -z "$(lookup)"
check "... the config and state folders" \
    sh -c "[ ! -e '$home/.config/keyswitch' ] && [ ! -e '$home/.local/state/keyswitch' ]"
check "... the settings keyswitch created" test ! -e "$home/.claude/settings.json"
check "... and then the binary" test ! -e "$bin"

home=$(new_home prefix)
as_user "$home" "$nocargo" env PREFIX="$home/opt" "$unpacked/install.sh" >/dev/null 2>&1
out=$(as_user "$home" "$home/opt/bin:$nocargo" "$unpacked/install.sh" --uninstall 2>&1) \
    && fail "install.sh --uninstall without the PREFIX it was installed with exits non-zero"
check "install.sh --uninstall without the install's PREFIX names it" \
    grep -qF "run PREFIX=$home/opt ./install.sh --uninstall" <<<"$out"
check "... and removes nothing" test -x "$home/opt/bin/keyswitch"
as_user "$home" "$nocargo" env PREFIX="$home/opt" "$unpacked/install.sh" --uninstall >/dev/null 2>&1
check "install.sh --uninstall with that PREFIX removes it" test ! -e "$home/opt/bin/keyswitch"

damaged="$work/damaged"
cp -a "$unpacked" "$damaged"
printf 'x' >>"$damaged/keyswitch"
home=$(new_home damaged)
out=$(as_user "$home" "$nocargo" "$damaged/install.sh" 2>&1) && fail "install.sh refuses a binary that does not match SHA256SUMS"
check "a damaged binary is refused in one line naming the checksum" \
    test "$(grep -c 'does not match its checksum' <<<"$out")" = 1
check "a damaged binary is not installed" test ! -e "$home/.local/bin/keyswitch"

home=$(new_home args)
status=0
as_user "$home" "$nocargo" "$unpacked/install.sh" --purge >/dev/null 2>&1 || status=$?
check "install.sh --purge without --uninstall is refused (2) before installing anything" \
    sh -c "[ $status = 2 ] && [ ! -e '$home/.local/bin/keyswitch' ]"
out=$(as_user "$home" "$nocargo" "$unpacked/install.sh" --help 2>&1)
check "install.sh --help shows its usage and installs nothing" \
    sh -c "printf '%s' \"\$1\" | grep -q -- '--uninstall --purge' && [ ! -e '$home/.local/bin/keyswitch' ]" _ "$out"

echo "== npm packages, installed offline into a throwaway prefix"
home=$(new_home npm)
prefix="$work/npm-prefix"
# The main package and this platform's; npm refuses a tarball named outright for another OS.
tarball="$repo/dist/npm/$(sed 's|^@||; s|/|-|' <<<"$npm_name")"
if ! out=$(as_user "$home" "$nocargo" npm install -g --offline --no-update-notifier --no-audit --no-fund --loglevel=error \
    --prefix "$prefix" "$tarball-$version.tgz" "$tarball-linux-x64-$version.tgz" 2>&1); then
    echo "$out" >&2
    fail "npm install -g --offline of the packed tarballs"
    exit 1
fi
npm_path="$prefix/bin:$nocargo"
launcher=$(readlink -f "$prefix/bin/keyswitch")
native=$(readlink -f "$prefix"/lib/node_modules/"$npm_name"-linux-x64/bin/keyswitch)
check "npm's keyswitch is the JS launcher" test "$(basename "$launcher")" = keyswitch.js
check "the platform package's binary is executable" test -x "$native"
check "keyswitch --version through the launcher" \
    test "$(as_user "$home" "$npm_path" keyswitch --version)" = "keyswitch $version"
# Helper mode here: get prints the key, so the launcher's stdout can be compared byte for byte.
out=$(as_user "$home" "$npm_path" keyswitch install --helper 2>&1) || { echo "$out"; fail "keyswitch install through the launcher exits 0"; }
check "install through the launcher wires the native binary, not the launcher" \
    test "$(helper_of "$home")" = "$native get"
check "install's next step names a bare keyswitch, which is on PATH" \
    grep -q '`keyswitch add primary`' <<<"$out"
key=$(secret npm)
check "add through the launcher reads the secret from stdin" \
    as_user "$home" "$npm_path" sh -c "printf '%s' '$key' | keyswitch add primary"
as_user "$home" "$npm_path" keyswitch get >"$work/get-launcher" 2>"$work/get-launcher.err"
as_user "$home" "$npm_path" "$native" get >"$work/get-native" 2>/dev/null
check "get through the launcher prints the key on stdout, byte for byte as the binary does" \
    sh -c "cmp -s '$work/get-launcher' '$work/get-native' && [ \"\$(cat '$work/get-launcher')\" = '$key' ] && [ ! -s '$work/get-launcher.err' ]"
check "doctor through the launcher finds keyswitch on PATH" \
    grep -q '^ok    keyswitch is on PATH' <<<"$(as_user "$home" "$npm_path" keyswitch doctor 2>&1)"
status=0
as_user "$home" "$npm_path" keyswitch no-such-command >/dev/null 2>&1 || status=$?
check "the launcher passes a usage error's exit status (2) through (got $status)" test "$status" = 2
empty=$(new_home npm-empty)
status=0
as_user "$empty" "$npm_path" keyswitch get >"$work/get-empty" 2>/dev/null || status=$?
check "the launcher passes get's failure (1, empty stdout) through (got $status)" \
    sh -c "[ $status = 1 ] && [ ! -s '$work/get-empty' ]"

if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 3 --runs 20 --style none --export-json "$work/launcher.json" \
        "env -i HOME=$home PATH=$npm_path DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS $prefix/bin/keyswitch get" \
        "env -i HOME=$home PATH=$npm_path DBUS_SESSION_BUS_ADDRESS=$DBUS_SESSION_BUS_ADDRESS $native get" >/dev/null 2>&1
    python3 - "$work/launcher.json" <<'PY'
import json, sys
via, direct = (r["median"] * 1000 for r in json.load(open(sys.argv[1]))["results"])
print(f"info  keyswitch get, median: {via:.1f} ms through the npm launcher, {direct:.1f} ms the binary itself (+{via - direct:.1f} ms)")
PY
fi
as_user "$home" "$npm_path" keyswitch remove primary 2>/dev/null

echo "== source checkout"
home=$(new_home source-nocargo)
out=$(as_user "$home" "$nocargo" "$repo/install.sh" 2>&1) && fail "install.sh from a checkout without cargo fails"
check "without cargo, a one-line error naming cargo and the ways out" \
    sh -c "[ \"\$(printf '%s\n' \"\$1\" | wc -l)\" = 1 ] && printf '%s' \"\$1\" | grep -q 'cargo is missing.*release archive or the npm package'" _ "$out"
home=$(new_home source)
# With cargo (this PATH), install.sh builds as before: target/release is up to date, so no rebuild.
out=$(as_user "$home" "$PATH" env RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
    CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" "$repo/install.sh" 2>&1) || { echo "$out"; fail "install.sh from a checkout exits 0"; }
check "install.sh from a checkout installs the build of this checkout" \
    cmp -s "$home/.local/bin/keyswitch" target/release/keyswitch
# It started a proxy (proxy mode): leave no process behind.
as_user "$home" "$PATH" "$home/.local/bin/keyswitch" uninstall >/dev/null 2>&1

if [ "$failures" -gt 0 ]; then
    echo "test-install: $failures check(s) failed" >&2
    exit 1
fi
echo "test-install: all install paths pass (${SECONDS}s)"
