#!/usr/bin/env bash
# The Windows build, run for real: keyswitch.exe (x86_64-pc-windows-gnu) under Wine, in a private
# WINEPREFIX, against Wine's real Credential Manager (advapi32 CredWrite/CredRead). Called by
# scripts/test.sh; set KEYSWITCH_SKIP_WINDOWS=1 to leave it out.
#
# Needs wine64 and gcc-mingw-w64-x86-64 (installed here with apt-get when missing) and the Rust
# target (added with rustup when missing). Test-only helpers are built with mingw next to the
# exe, never shipped: bcryptprimitives.dll (Wine 8 lacks the ProcessPrng that Rust's std imports;
# it forwards to RtlGenRandom), fake_claude.exe (runs commands through cmd.exe the way Claude
# Code runs the apiKeyHelper, with CLAUDE_PID set the way it sets it for hooks) and
# list_credentials.exe (what the Credential Manager itself holds).
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
wine=$(command -v wine64 || true)
[ -n "$wine" ] || [ ! -x /usr/lib/wine/wine64 ] || wine=/usr/lib/wine/wine64
need=()
[ -n "$wine" ] || need+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test-windows.sh: missing ${need[*]}: install them with your package manager" >&2
        exit 1
    fi
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "test-windows.sh: installing ${need[*]} (apt-get)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
wineserver="$(dirname "$wine")/wineserver"
[ -x "$wineserver" ] || wineserver="$(dirname "$wine")/wineserver64"

started=$(date +%s)
cargo build --quiet --target "$target"
work=$(mktemp -d)
export WINEPREFIX="$work/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
standin=
cleanup() {
    [ -z "$standin" ] || kill "$standin" 2>/dev/null || true
    "$wineserver" -k 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# Keyswitch's folders are the prefix's own (AppData); nothing of the host's may leak in.
unset DISPLAY XDG_CONFIG_HOME XDG_STATE_HOME CLAUDE_CONFIG_DIR CLAUDE_PID ANTHROPIC_BASE_URL
bin="$work/bin"
mkdir -p "$bin"
cp "target/$target/debug/keyswitch.exe" "$bin/"
x86_64-w64-mingw32-gcc -O2 -shared -o "$bin/bcryptprimitives.dll" tests/windows/bcryptprimitives.c -ladvapi32
x86_64-w64-mingw32-gcc -O2 -o "$bin/fake_claude.exe" tests/windows/fake_claude.c
x86_64-w64-mingw32-gcc -O2 -o "$bin/list_credentials.exe" tests/windows/list_credentials.c -ladvapi32
cp tests/windows/standin.py "$bin/"
cd "$bin"
# One wineserver for the whole run: a cold Wine start costs seconds, a warm one well under one.
mkdir -p "$WINEPREFIX"
"$wineserver" -p
"$wine" cmd /c exit >/dev/null 2>&1

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
ks() { "$wine" keyswitch.exe "$@"; }
# `expect_ok NAME WANT-STDOUT CMD...`; `expect_refused NAME WANT-IN-STDERR CMD...` (exit 2).
expect_ok() {
    local name=$1 want=$2 out
    shift 2
    if ! out=$("$@" 2>"$work/err"); then
        fail "$name: exited non-zero: $(cat "$work/err")"
    elif [ "$out" != "$want" ]; then
        fail "$name: printed '$out', wanted '$want'"
    fi
}
expect_refused() {
    local name=$1 want=$2 status=0
    shift 2
    "$@" >"$work/out" 2>"$work/err" || status=$?
    if [ "$status" -ne 2 ]; then
        fail "$name: exit status $status, wanted 2: $(cat "$work/err")"
    elif [ "$(wc -l <"$work/err")" -ne 1 ] || ! grep -qF -- "$want" "$work/err"; then
        fail "$name: wanted one line containing '$want', got: $(cat "$work/err")"
    fi
}
# The names of the keys in order, and one key's state, from `list --json`.
names() { ks list --json | python3 -c 'import json,sys; print(" ".join(k["name"] for k in json.load(sys.stdin)))'; }
# What the Credential Manager itself holds for a key (read with CredEnumerate, not keyswitch).
stored() { "$wine" list_credentials.exe | tr -d '\r' | awk -F '\t' -v t="$1.keyswitch" '$1 == t { print $2 }'; }
state() { ks list --json | python3 -c 'import json,sys; print(next(k["state"] for k in json.load(sys.stdin) if k["name"]==sys.argv[1]))' "$1"; }

echo "== Windows: keyswitch.exe under $("$wine" --version 2>/dev/null || echo wine)"

# add / list / get, through the real Credential Manager.
printf 'sk-ant-test-aaa' | ks add a 2>/dev/null || fail "add a"
printf 'sk-ant-test-bbb\n' | ks add b 2>/dev/null || fail "add b"
expect_ok "list" "a b" names
expect_ok "get" "sk-ant-test-aaa" ks get
expect_ok "b in the Credential Manager" "sk-ant-test-bbb" stored b

# Bad input: refused in one line, nothing changed.
expect_refused "bad name" "key name" sh -c "printf 'sk-ant-test-x' | '$wine' keyswitch.exe add 'bad name'"
long=sk-ant-test-$(printf 'x%.0s' $(seq 1 2600))
expect_refused "secret too long for the Credential Manager" "holds at most 2560" \
    sh -c "printf '%s' '$long' | '$wine' keyswitch.exe add c"
expect_refused "replace with a too long secret" "holds at most 2560" \
    sh -c "printf '%s' '$long' | '$wine' keyswitch.exe add a --replace"
expect_refused "unknown key" "no key named" ks mark-exhausted nope
expect_ok "nothing changed by bad input" "a b" names
expect_ok "nothing stored by bad input" "" stored c
expect_ok "the old secret kept" "sk-ant-test-aaa" ks get
# The longest secret the Credential Manager holds goes in and comes back whole.
most=sk-ant-test-$(printf 'y%.0s' $(seq 1 2548))
printf '%s' "$most" | ks add c 2>/dev/null || fail "add a 2560-character secret"
expect_ok "the longest secret, whole in the Credential Manager" "$most" stored c
ks mark-exhausted a 2>/dev/null && ks mark-exhausted b 2>/dev/null || fail "mark a and b"
expect_ok "the longest secret" "$most" ks get

# mark / reset / move / remove.
ks reset 2>/dev/null || fail "reset all"
ks mark-exhausted a 2>/dev/null || fail "mark a"
expect_ok "mark hands out the next" "cooling" state a
expect_ok "get after mark" "sk-ant-test-bbb" ks get
ks reset a 2>/dev/null || fail "reset a"
expect_ok "get after reset" "sk-ant-test-aaa" ks get
ks move b 1 2>/dev/null || fail "move b 1"
expect_ok "move" "b a c" names
expect_ok "get after move" "sk-ant-test-bbb" ks get
ks remove c 2>/dev/null || fail "remove c"
expect_ok "remove" "b a" names
expect_ok "remove deletes from the Credential Manager" "" stored c
printf 'sk-ant-test-ccc' | ks add c 2>/dev/null || fail "add c again after remove"
ks move c 1 2>/dev/null || fail "move c 1"
expect_ok "a removed key's new secret" "sk-ant-test-ccc" ks get
ks remove c 2>/dev/null || fail "remove c again"
ks move a 1 2>/dev/null || fail "move a 1"

# Concurrency: adds and gets at once; every key lands, every get prints a whole key.
pids=()
for i in 1 2 3 4 5 6; do
    (printf 'sk-ant-test-p%s' "$i" | ks add "p$i" 2>/dev/null || echo "add p$i failed" >>"$work/conc") &
    pids+=($!)
    (out=$(ks get 2>/dev/null); [ "$out" = sk-ant-test-aaa ] || echo "get printed '$out'" >>"$work/conc") &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
[ ! -s "$work/conc" ] || fail "concurrency: $(cat "$work/conc")"
sorted=$(names | tr ' ' '\n' | sort | xargs)
[ "$sorted" = "a b p1 p2 p3 p4 p5 p6" ] || fail "concurrent adds: the keys are '$sorted'"
for i in 1 2 3 4 5 6; do ks remove "p$i" 2>/dev/null || fail "remove p$i"; done

# The hook marks the key *this session* was handed: Claude Code (fake_claude.exe) runs the helper
# through cmd.exe (and once more through a nested cmd), then the user moves b to the top, then
# the session's StopFailure hook runs with CLAUDE_PID. It must mark a, not the now active b.
printf '%s' '{"hook_event_name":"StopFailure","error":"rate_limit","session_id":"w1"}' >hook.json
"$wine" fake_claude.exe "cmd /c keyswitch.exe get" "keyswitch.exe move b 1" \
    "keyswitch.exe hook stop-failure < hook.json" >"$work/claude.out" 2>"$work/claude.err" \
    || fail "fake Claude Code: $(cat "$work/claude.err")"
grep -qx 'sk-ant-test-aaa' "$work/claude.out" || fail "the session's helper did not get a: $(cat "$work/claude.out")"
expect_ok "the hook marked the session's key" "cooling" state a
expect_ok "the hook left the active key alone" "ready" state b

# Wiring, as Claude Code meets it: the apiKeyHelper `install` writes, run through cmd.exe.
settings_file() { ls "$WINEPREFIX"/drive_c/users/*/.claude/settings.json 2>/dev/null | head -n 1; }
setting() {
    python3 - "$(settings_file)" "$1" <<'PY'
import json, sys
try:
    value = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    value = None
for part in sys.argv[2].split("."):
    value = value.get(part) if isinstance(value, dict) else None
print("" if value is None else value)
PY
}
# What the installed apiKeyHelper prints when Claude Code (fake_claude.exe: cmd.exe) runs it,
# with the settings' ANTHROPIC_BASE_URL in its environment as Claude Code passes it. Read from a
# pipe, as Claude Code reads it: the answer counts only once the pipe ends, so a process the
# helper leaves behind holding it open (a background proxy) shows as a hang, bounded here.
helper_says() {
    python3 - "$wine" "$(setting apiKeyHelper)" "$(setting env.ANTHROPIC_BASE_URL)" <<'PY'
import os, subprocess, sys
wine, helper, url = sys.argv[1:4]
env = dict(os.environ, **({"ANTHROPIC_BASE_URL": url} if url else {}))
try:
    out = subprocess.run([wine, "fake_claude.exe", helper], stdout=subprocess.PIPE,
                         env=env, timeout=60).stdout
except subprocess.TimeoutExpired:
    print("(its output did not end within 60 s)")
    sys.exit(0)
lines = out.decode(errors="replace").replace("\r", "").splitlines()
print(lines[1] if len(lines) > 1 else "")
PY
}
proxy_running() { ks proxy status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["running"])'; }
ks reset 2>/dev/null && ks move a 1 2>/dev/null || fail "reset and move a 1 before install"
ks install --helper 2>/dev/null || fail "install"
case "$(setting apiKeyHelper)" in
    *'\\?\'*) fail "the apiKeyHelper names the binary by a \\\\?\\ path, which cmd.exe cannot run: $(setting apiKeyHelper)" ;;
esac
expect_ok "the installed apiKeyHelper, through cmd.exe" "sk-ant-test-aaa" helper_says

# Proxy mode: the same helper hands out the proxy's token and starts the proxy in the
# background; the proxy answers a request whose key is spent (429) from the next key.
python3 standin.py "$work/seen" sk-ant-test-aaa >"$work/standin.port" &
standin=$!
for _ in $(seq 100); do [ -s "$work/standin.port" ] && break; sleep 0.1; done
upstream="http://127.0.0.1:$(cat "$work/standin.port")"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ANTHROPIC_BASE_URL=$upstream ks install --proxy --listen "127.0.0.1:$port" 2>/dev/null || fail "install --proxy"
expect_ok "proxy mode: Claude Code's base URL" "http://127.0.0.1:$port" setting env.ANTHROPIC_BASE_URL
ks proxy stop 2>/dev/null || fail "proxy stop before the first get"
token=$(helper_says)
case "$token" in
    ksp-*) ;;
    *) fail "proxy mode: the apiKeyHelper printed '${token:0:40}', not the proxy's token" ;;
esac
expect_ok "proxy mode: the helper started the proxy" "True" proxy_running
answer=$(python3 - "$port" "$token" <<'PY'
import json, sys, urllib.request
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/v1/messages?beta=true",
    data=b'{"model":"claude-test","max_tokens":10,"messages":[]}',
    headers={"x-api-key": sys.argv[2], "authorization": "Bearer " + sys.argv[2],
             "content-type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=20) as response:
        print(response.status, json.load(response)["content"][0]["text"])
except Exception as e:
    print("failed:", e)
PY
)
[ "$answer" = "200 from sk-ant-test-bbb" ] || fail "proxy mode: the request got '$answer'"
[ "$(xargs 2>/dev/null <"$work/seen")" = "sk-ant-test-aaa sk-ant-test-bbb" ] \
    || fail "proxy mode: the upstream saw the keys '$(xargs 2>/dev/null <"$work/seen")'"
expect_ok "proxy mode: the spent key cools" "cooling" state a
ks proxy stop 2>/dev/null || fail "proxy stop"
expect_ok "proxy stop" "False" proxy_running
ks uninstall 2>/dev/null || fail "uninstall"
expect_ok "uninstall removes the apiKeyHelper" "" setting apiKeyHelper
expect_ok "uninstall removes the proxy's base URL" "" setting env.ANTHROPIC_BASE_URL

# Installed where the path has a space (C:\Program Files\..., C:\Users\John Doe\...): the
# helper's quoted path still runs through cmd.exe.
mkdir -p "$bin/key switch"
cp keyswitch.exe "$bin/key switch/"
"$wine" "key switch/keyswitch.exe" install --helper 2>/dev/null || fail "install from a path with a space"
case "$(setting apiKeyHelper)" in
    *'key switch/keyswitch.exe" get') ;;
    *) fail "the apiKeyHelper from a path with a space: $(setting apiKeyHelper)" ;;
esac
expect_ok "the apiKeyHelper from a path with a space, through cmd.exe" "sk-ant-test-bbb" helper_says
"$wine" "key switch/keyswitch.exe" uninstall 2>/dev/null || fail "uninstall from a path with a space"

# set changes a key's options in place; uninstall --purge deletes every secret from the
# Credential Manager and keyswitch's folders.
ks set a --cooldown 5h 2>/dev/null || fail "set a --cooldown 5h"
expect_ok "set keeps the secret" "sk-ant-test-aaa" stored a
ks uninstall --purge --yes 2>/dev/null || fail "uninstall --purge --yes"
expect_ok "purge deletes a from the Credential Manager" "" stored a
expect_ok "purge deletes b from the Credential Manager" "" stored b
expect_ok "purge leaves no keys" "" names

echo "Windows tests: $failures failure(s), $(($(date +%s) - started)) s (build included)"
[ "$failures" -eq 0 ]
