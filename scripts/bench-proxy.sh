#!/usr/bin/env bash
# Benchmark of proxy mode: every figure against a reference measured in the same run.
#   added latency   the same 50 KB requests direct to a stand-in upstream and through the proxy,
#                   interleaved over keep-alive connections: p50/p99 at concurrency 1 and 32,
#                   and time to the first event of a streamed answer
#   failover        from the stand-in handing out the primary's 429 to the fallback's request
#                   arriving, against a client that re-sends to the fallback by itself
#   memory, start   the proxy's VmRSS idle and with 64 streams open; spawn to health answer
#   get             `keyswitch get` in proxy mode (the token path) against `secret-tool lookup`
# The stand-in and the load generator are bench/proxy-bench (tokio + hyper). Latency figures
# are medians over repeated rounds. Prints a table with PASS/FAIL per target and exits non-zero
# when one is missed. Needs hyperfine, GNU time and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--inside" ]; then
    command -v hyperfine >/dev/null || { echo "bench-proxy: needs hyperfine: sudo apt-get install hyperfine" >&2; exit 1; }
    [ -x /usr/bin/time ] || { echo "bench-proxy: needs GNU time for peak memory: sudo apt-get install time" >&2; exit 1; }
    command -v python3 >/dev/null || { echo "bench-proxy: needs python3: sudo apt-get install python3" >&2; exit 1; }
    cargo build --release --quiet
    (cd bench/proxy-bench && cargo build --release --quiet)
    exec scripts/with-private-keyring.sh "$0" --inside "$@"
fi
shift

work=$(mktemp -d)
# KEYSWITCH_BIN: measure another build of keyswitch (e.g. to compare a change).
bin="${KEYSWITCH_BIN:-$PWD/target/release/keyswitch}"
cleanup() {
    "$bin" proxy stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
# A throwaway sandbox: folders, Claude Code settings and a keychain service of its own.
export XDG_CONFIG_HOME="$work/config" XDG_STATE_HOME="$work/state" CLAUDE_CONFIG_DIR="$work/claude"
# Nothing from the caller's own setup: no credentials, and loopback never through a proxy.
unset ANTHROPIC_BASE_URL ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN \
    HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
service="keyswitch-bench-$$"
mkdir -p "$XDG_CONFIG_HOME/keyswitch" "$CLAUDE_CONFIG_DIR"
printf '{"keychain_service": "%s"}\n' "$service" >"$XDG_CONFIG_HOME/keyswitch/config.json"
for name in primary fallback; do
    # The stand-in answers 429 to a key containing "-primary-".
    printf 'sk-ant-test-bench-%s-%s' "$name" "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
        | "$bin" add "$name" 2>/dev/null
done

"$PWD/bench/proxy-bench/target/release/proxy-bench" --keyswitch "$bin" "$@" >"$work/proxy.json"

# `get` in proxy mode: reads the config, checks the proxy answers, prints the token.
# proxy.json: in the config folder, or the state folder for an older build.
settings="$XDG_CONFIG_HOME/keyswitch/proxy.json"
[ -f "$settings" ] || settings="$XDG_STATE_HOME/keyswitch/proxy.json"
proxy_url="http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' "$settings")"
"$bin" proxy start 2>/dev/null
[ "$(ANTHROPIC_BASE_URL="$proxy_url" "$bin" get)" = "$(cat "$XDG_STATE_HOME/keyswitch/proxy-token")" ] \
    || { echo "bench-proxy: get did not hand out the proxy's token" >&2; exit 1; }
ANTHROPIC_BASE_URL="$proxy_url" hyperfine -N --warmup 30 --runs 300 --style basic \
    --export-json "$work/get.json" \
    -n "keyswitch get (proxy mode)" "$bin get" \
    -n "secret-tool lookup" "secret-tool lookup service $service username primary" >/dev/null
peak_kb=$( { ANTHROPIC_BASE_URL="$proxy_url" /usr/bin/time -f '%M' "$bin" get >/dev/null; } 2>&1 | tail -n 1)

python3 - "$work" "$peak_kb" <<'PY'
import json, sys
work, peak_kb = sys.argv[1], int(sys.argv[2])
r = json.load(open(f"{work}/proxy.json"))
get = {x["command"]: x["median"] * 1000 for x in json.load(open(f"{work}/get.json"))["results"]}
c1, c32, ttfb, fo, rss = r["c1"]["median"], r["c32"]["median"], r["ttfb"]["median"], r["failover"], r["rss_kib"]
rounds = len(r["c1"]["rounds"])
print(f"proxy mode, {r['body_bytes'] // 1000} KB requests; latency: medians of {rounds} rounds (ms)")
print(f"  {'':<22} {'direct p50':>10} {'p99':>7} {'proxy p50':>10} {'p99':>7}   proxy CPU per request")
for name, key in [("concurrency 1", "c1"), ("concurrency 32", "c32"), ("stream, first event", "ttfb")]:
    m, first = r[key]["median"], r[key]["rounds"][0]
    cpu = f"   {first['proxy_cpu_us']:.0f} us (+{first['proxy_cpu_wait_us']:.0f} us waiting for a CPU)" if "proxy_cpu_us" in first else ""
    print(f"  {name:<22} {m['direct_p50']:10.3f} {m['direct_p99']:7.3f} {m['proxy_p50']:10.3f} {m['proxy_p99']:7.3f}{cpu}")
    if "direct_generator_and_stand_in_cpu_us" in first:
        print(f"  {'':<64}for scale, load generator + stand-in per direct request: {first['direct_generator_and_stand_in_cpu_us']:.0f} us")
print(f"  failover gap (median of {fo['samples']}): client re-sending itself {fo['direct_median_ms']:.3f}, "
      f"proxy {fo['proxy_median_ms']:.3f} (max {fo['proxy_max_ms']:.3f}; first, reading the fallback's secret: {fo['cold_ms']:.3f})")
print(f"  proxy RSS: at start {rss['at_start'] / 1024:.1f} MiB, after warm-up {rss['idle_after_warmup'] / 1024:.1f} MiB, "
      f"64 streams {rss['streams_64'] / 1024:.1f} MiB, idle after load {rss['idle_after_load'] / 1024:.1f} MiB")
print(f"  start to ready: {r['ready_ms']['median']:.1f} ms (median of {len(r['ready_ms']['all'])})")
print(f"  keyswitch get (proxy mode) {get['keyswitch get (proxy mode)']:.2f}, secret-tool lookup {get['secret-tool lookup']:.2f}")
idle_mib = max(rss["idle_after_warmup"], rss["idle_after_load"]) / 1024
get_ratio = get["keyswitch get (proxy mode)"] / get["secret-tool lookup"]
checks = [
    ("added p50, concurrency 1", c1["added_p50"], "ms", 0.3),
    ("added p99, concurrency 1", c1["added_p99"], "ms", 1.0),
    ("added p99, concurrency 32", c32["added_p99"], "ms", 2.0),
    ("added time to first event", ttfb["added_p50"], "ms", 0.5),
    ("added failover gap", fo["added_ms"], "ms", 1.0),
    ("RSS idle (after load)", idle_mib, "MiB", 15),
    ("RSS with 64 streams open", rss["streams_64"] / 1024, "MiB", 40),
    ("start to ready", r["ready_ms"]["median"], "ms", 50),
    ("get / secret-tool lookup", get_ratio, "x", 0.5),
    ("peak memory of get", peak_kb / 1024, "MiB", 10),
]
print(f"{'':6}{'target':<28} {'measured':>9}   limit")
passed = True
for name, value, unit, limit in checks:
    strict = name == "peak memory of get"  # the only "less than"; the rest are "at most"
    ok = value < limit if strict else value <= limit
    passed = passed and ok
    print(f"{'PASS' if ok else 'FAIL':<6}{name:<28} {value:9.3f}   {'<' if strict else '<='} {limit:g} {unit}")
sys.exit(0 if passed else 1)
PY
