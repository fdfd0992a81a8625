#!/usr/bin/env bash
# Benchmark: `keyswitch get` and `keyswitch status` against references timed in the same run,
# with the same secret in the same (private) keyring. Prints ratios and checks the targets:
#   get    <= 0.5 x  secret-tool lookup      (what a user would write by hand instead)
#   status <= 2   x  cat of a small file     (the floor for starting any process)
#   peak memory of get < 10 MB
# and, with --stores, compares ways of reading a secret from the Secret Service (see README).
# Needs hyperfine and GNU time (apt-get install hyperfine time). Exits non-zero when a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
    command -v hyperfine >/dev/null || { echo "bench: needs hyperfine: sudo apt-get install hyperfine" >&2; exit 1; }
    [ -x /usr/bin/time ] || { echo "bench: needs GNU time for peak memory: sudo apt-get install time" >&2; exit 1; }
    cargo build --release --quiet
    if [ "${1:-}" = "--stores" ]; then
        (cd bench/store-compare && cargo build --release --quiet)
    fi
    exec scripts/with-private-keyring.sh "$0" --inside "$@"
fi
shift
stores=${1:-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_CONFIG_HOME="$work/config" XDG_STATE_HOME="$work/state"
bin="$PWD/target/release/keyswitch"
secret="sk-ant-test-bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$secret" | "$bin" add bench 2>/dev/null
printf '%s' "$secret" >"$work/key.txt"
[ "$("$bin" get)" = "$secret" ] || { echo "bench: keyswitch get did not return the stored secret" >&2; exit 1; }
[ "$(secret-tool lookup service keyswitch username bench)" = "$secret" ] || { echo "bench: secret-tool disagrees" >&2; exit 1; }

# KEYSWITCH_BASELINE_BIN: another build of keyswitch (e.g. the previous release), timed in the
# same run against the same keyring, so a change is judged by a ratio, not by two runs' noise.
baseline=()
if [ -n "${KEYSWITCH_BASELINE_BIN:-}" ]; then
    [ "$("$KEYSWITCH_BASELINE_BIN" get)" = "$secret" ] || { echo "bench: the baseline's get did not return the stored secret" >&2; exit 1; }
    baseline=(-n "keyswitch get (baseline)" "$KEYSWITCH_BASELINE_BIN get")
fi
hyperfine -N --warmup 30 --runs 400 --style basic --export-json "$work/times.json" \
    -n "keyswitch get" "$bin get" "${baseline[@]}" \
    -n "secret-tool lookup" "secret-tool lookup service keyswitch username bench" \
    -n "keyswitch status" "$bin status" \
    -n "cat" "cat $work/key.txt" >"$work/hyperfine.txt"

if [ "$stores" = "--stores" ]; then
    compare="$PWD/bench/store-compare/target/release/store-compare"
    hyperfine -N --warmup 30 --runs 300 --style basic --export-json "$work/stores.json" \
        -n "libdbus, encrypted (dbus-secret-service-keyring-store)" "$compare libdbus-dh keyswitch bench" \
        -n "zbus, encrypted (zbus-secret-service-keyring-store)" "$compare zbus-dh keyswitch bench" \
        -n "libdbus, plain session (keyswitch)" "$compare keyswitch keyswitch bench" \
        -n "secret-tool lookup" "secret-tool lookup service keyswitch username bench" >/dev/null
fi

# Peak resident memory of one `get`, in KB, as the kernel accounts it for that process alone.
peak_kb=$( { /usr/bin/time -f '%M' "$bin" get >/dev/null; } 2>&1 | tail -n 1)

python3 - "$work" "$peak_kb" "$stores" <<'PY'
import json, sys
work, peak_kb, stores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
times = {r["command"]: r for r in json.load(open(f"{work}/times.json"))["results"]}
def ms(name): return times[name]["median"] * 1000
get_ratio = ms("keyswitch get") / ms("secret-tool lookup")
status_ratio = ms("keyswitch status") / ms("cat")
print("median times (ms):")
for name in ["keyswitch get", "keyswitch get (baseline)", "secret-tool lookup", "keyswitch status", "cat"]:
    if name in times:
        print(f"  {name:<24} {ms(name):7.2f}")
if "keyswitch get (baseline)" in times:
    print(f"  get / baseline get       = {ms('keyswitch get') / ms('keyswitch get (baseline)'):.2f}  (informational)")
checks = [
    (f"get / secret-tool lookup = {get_ratio:.2f}  (target <= 0.50)", get_ratio <= 0.5),
    (f"status / cat             = {status_ratio:.2f}  (target <= 2.00)", status_ratio <= 2.0),
    (f"peak memory of get       = {peak_kb / 1024:.1f} MB (target < 10 MB)", peak_kb < 10 * 1024),
]
for text, ok in checks:
    print(("PASS  " if ok else "FAIL  ") + text)
if stores == "--stores":
    print("reading one secret, median (ms):")
    for r in json.load(open(f"{work}/stores.json"))["results"]:
        print(f"  {r['command']:<58} {r['median'] * 1000:7.2f}")
sys.exit(0 if all(ok for _, ok in checks) else 1)
PY
