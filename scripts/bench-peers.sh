#!/usr/bin/env bash
# keyswitch's proxy beside the proxies people use instead, in one run, each figure with its
# ratio to keyswitch's. Installs pinned peers into .cache (a peer that cannot be installed is
# reported and skipped), gives each the same two fake keys in front of the same stand-in
# upstream (bench/proxy-bench), and drives all of them, interleaved, with the same load
# generator; prints one Markdown table (docs/speed.md holds its output).
#   peers     LiteLLM proxy (PyPI litellm[proxy], the pin of scripts/install-litellm.sh),
#             claude-code-router (npm @musistudio/claude-code-router), better-ccflare (npm)
#   offline   the measurement runs in a network namespace of its own (unshare -n): loopback
#             only, so no peer can send anything anywhere; each peer's own telemetry, price-list
#             and update switches are set off too (see peer_* below)
# Needs python3, node + npm, unshare and ip (util-linux, iproute2). Runs in about 4-6 minutes
# after the first install on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."

CCR_VERSION=2.0.0       # the newest release that runs on Node 20 (3.x asks for Node >= 22)
CCFLARE_VERSION=3.5.4
cache="$PWD/.cache/peers"

case "${1:-}" in --inside | --inside-netns) outside= ;; *) outside=1 ;; esac
if [ -n "$outside" ]; then
    for tool in python3 unshare ip; do
        command -v "$tool" >/dev/null || { echo "bench-peers: needs $tool" >&2; exit 1; }
    done
    cargo build --release --quiet
    (cd bench/proxy-bench && cargo build --release --quiet)
    mkdir -p "$cache"
    : >"$cache/skipped"
    # LiteLLM: the venv the gateway tests use.
    if litellm=$(scripts/install-litellm.sh 2>"$cache/litellm-install.log"); then
        echo "$litellm" >"$cache/litellm-bin"
    else
        echo "LiteLLM proxy: not installed ($(tail -n 1 "$cache/litellm-install.log"))" >>"$cache/skipped"
        rm -f "$cache/litellm-bin"
    fi
    npm_install() { # folder package version
        local dir="$cache/$1" pkg="$2" version="$3"
        local have
        have=$(node -p "require('$dir/node_modules/$pkg/package.json').version" 2>/dev/null || true)
        [ "$have" = "$version" ] && return 0
        command -v npm >/dev/null || { echo "$pkg: not installed (no npm)" >>"$cache/skipped"; return 0; }
        rm -rf "$dir" && mkdir -p "$dir"
        echo "bench-peers: installing $pkg@$version into $dir" >&2
        npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error \
            "$pkg@$version" >"$dir.log" 2>&1 \
            || echo "$pkg: not installed ($(tail -n 1 "$dir.log"))" >>"$cache/skipped"
    }
    npm_install ccr @musistudio/claude-code-router "$CCR_VERSION"
    npm_install better-ccflare better-ccflare "$CCFLARE_VERSION"
    # Root makes the namespace directly; anyone else through a user namespace.
    userns=()
    [ "$(id -u)" -eq 0 ] || userns=(-r)
    exec unshare "${userns[@]}" -n "$0" --inside-netns "$@"
fi
if [ "${1:-}" = "--inside-netns" ]; then
    shift
    ip link set lo up
    exec scripts/with-private-keyring.sh "$0" --inside "$@"
fi
shift

work=$(mktemp -d)
pids="$work/pids"
: >"$pids"
ks="$PWD/target/release/keyswitch"
cleanup() {
    # Every process group the benchmark started, should it have died before stopping them.
    while read -r pgid; do kill -KILL -- "-$pgid" 2>/dev/null || true; done <"$pids"
    "$ks" proxy stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
export XDG_CONFIG_HOME="$work/ks/config" XDG_STATE_HOME="$work/ks/state" CLAUDE_CONFIG_DIR="$work/ks/claude"
unset ANTHROPIC_BASE_URL ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN \
    HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
rand() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
# The same two fake keys for every proxy; the stand-in answers 429 to a key with "-primary-".
key_primary="sk-ant-test-bench-primary-$(rand)"
key_fallback="sk-ant-test-bench-fallback-$(rand)"
# In a namespace of its own, nothing else listens: fixed ports.
standin=18100
up="http://127.0.0.1:$standin"
peers_json="$work/peers.json"
echo "[]" >"$peers_json"
add_peer() { python3 - "$peers_json" "$1" <<'PY'
import json, sys
path, peer = sys.argv[1], json.loads(sys.argv[2])
peers = json.load(open(path)); peers.append(peer); json.dump(peers, open(path, "w"))
PY
}

# keyswitch: keys in the private keyring, proxy mode on port 18101.
service="keyswitch-bench-peers-$$"
mkdir -p "$XDG_CONFIG_HOME/keyswitch" "$CLAUDE_CONFIG_DIR"
printf '{"keychain_service": "%s"}\n' "$service" >"$XDG_CONFIG_HOME/keyswitch/config.json"
printf '%s' "$key_primary" | "$ks" add primary 2>/dev/null
printf '%s' "$key_fallback" | "$ks" add fallback 2>/dev/null
ks_version=$("$ks" --version | awk '{print $2}')
add_peer "$(python3 - "$ks" "$ks_version" "$up" "$work" <<'PY'
import json, sys
ks, version, up, work = sys.argv[1:]
listen = "127.0.0.1:18101"
print(json.dumps({
    "name": "keyswitch", "version": version, "keys_stored": "", "listen": listen,
    "log": f"{work}/keyswitch.log",
    "setup": [
        {"argv": [ks, "install", "--proxy", "--listen", listen], "env": {"ANTHROPIC_BASE_URL": up}},
        {"argv": [ks, "get"], "env": {"ANTHROPIC_BASE_URL": f"http://{listen}"}, "prints_token": True},
        {"argv": [ks, "proxy", "stop"]},
    ],
    "start": {"argv": [ks, "proxy", "run"]},
    "reset": [{"argv": [ks, "reset"]}],
}))
PY
)"

# LiteLLM proxy: both keys as deployments of one model, the primary first (`order`); price list
# from the package (LITELLM_LOCAL_MODEL_COST_MAP), telemetry off.
if [ -f .cache/peers/litellm-bin ]; then
    litellm=$(cat .cache/peers/litellm-bin)
    dir="$work/litellm" && mkdir -p "$dir/home"
    cat >"$dir/config.yaml" <<EOF
model_list:
  - model_name: claude-sonnet-4-5
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_base: "$up", api_key: "$key_primary", order: 1}
  - model_name: claude-sonnet-4-5
    litellm_params: {model: anthropic/claude-sonnet-4-5, api_base: "$up", api_key: "$key_fallback", order: 2}
general_settings:
  master_key: sk-litellm-bench-master
litellm_settings:
  telemetry: false
router_settings:
  enable_pre_call_checks: true
EOF
    version=$("$(dirname "$litellm")/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')
    add_peer "$(python3 - "$litellm" "$version" "$dir" <<'PY'
import json, sys
bin, version, dir = sys.argv[1:]
print(json.dumps({
    "name": "LiteLLM proxy", "version": version, "keys_stored": "", "listen": "127.0.0.1:18102",
    "token": "sk-litellm-bench-master", "log": f"{dir}/litellm.log",
    "start": {"argv": [bin, "--config", "config.yaml", "--host", "127.0.0.1", "--port", "18102"],
              "cwd": dir, "env": {"HOME": f"{dir}/home", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}},
}))
PY
)"
fi

# claude-code-router: each key a provider of its own, the fallback in its `fallback` list;
# its own log files off.
ccr_cli="$cache/ccr/node_modules/@musistudio/claude-code-router/dist/cli.js"
if [ -f "$ccr_cli" ] && command -v node >/dev/null; then
    dir="$work/ccr" && mkdir -p "$dir/home/.claude-code-router"
    cat >"$dir/home/.claude-code-router/config.json" <<EOF
{
  "APIKEY": "ccr-bench-client-token",
  "HOST": "127.0.0.1",
  "PORT": 18103,
  "LOG": false,
  "NON_INTERACTIVE_MODE": true,
  "Providers": [
    {"name": "primary", "api_base_url": "$up/v1/messages", "api_key": "$key_primary",
     "models": ["claude-sonnet-4-5"], "transformer": {"use": ["Anthropic"]}},
    {"name": "fallback", "api_base_url": "$up/v1/messages", "api_key": "$key_fallback",
     "models": ["claude-sonnet-4-5"], "transformer": {"use": ["Anthropic"]}}
  ],
  "Router": {"default": "primary,claude-sonnet-4-5"},
  "fallback": {"default": ["fallback,claude-sonnet-4-5"]}
}
EOF
    add_peer "$(python3 - "$ccr_cli" "$CCR_VERSION" "$dir" <<'PY'
import json, sys
cli, version, dir = sys.argv[1:]
print(json.dumps({
    "name": "claude-code-router", "version": version, "keys_stored": "", "listen": "127.0.0.1:18103",
    "token": "ccr-bench-client-token", "log": f"{dir}/ccr.log",
    "start": {"argv": ["node", cli, "start"], "cwd": dir, "env": {"HOME": f"{dir}/home"}},
}))
PY
)"
fi

# better-ccflare: two "console" accounts with a direct API key and the stand-in as custom
# endpoint, added through its own prompts; pricing list download off (CF_PRICING_OFFLINE).
ccflare="$cache/better-ccflare/node_modules/better-ccflare/dist/better-ccflare"
if [ -x "$ccflare" ]; then
    dir="$work/ccflare" && mkdir -p "$dir/home"
    ccflare_env=(HOME="$dir/home" BETTER_CCFLARE_DB_PATH="$dir/better-ccflare.db"
        BETTER_CCFLARE_CONFIG_PATH="$dir/config.json" BETTER_CCFLARE_HOST=127.0.0.1
        CF_PRICING_OFFLINE=1)
    ok=1
    for account in "primary 0 $key_primary" "fallback 1 $key_fallback"; do
        set -- $account
        # Its prompts read one line each through a fresh readline: answer each when asked.
        (cd "$dir" && env "${ccflare_env[@]}" python3 - "$ccflare" "$1" "$2" "$3" "$up" <<'PY'
import os, subprocess, sys
bin, name, priority, key, up = sys.argv[1:]
p = subprocess.Popen([bin, "--add-account", name, "--mode", "console", "--priority", priority],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
answers = [("Enter your choice", "2"), ("x-api-key", key), ("Enter your choice", "2"),
           ("endpoint URL", up)]
seen = b""
while answers:
    chunk = os.read(p.stdout.fileno(), 4096)
    if not chunk:
        break
    seen += chunk
    if answers[0][0].encode() in seen:
        seen = b""
        p.stdin.write((answers.pop(0)[1] + "\n").encode()); p.stdin.flush()
out = p.communicate(timeout=30)[0]
sys.exit(0 if p.returncode == 0 and not answers else 1)
PY
        ) >>"$dir/setup.log" 2>&1 || ok=0
    done
    if [ "$ok" = 1 ]; then
        add_peer "$(python3 - "$ccflare" "$CCFLARE_VERSION" "$dir" "${ccflare_env[@]}" <<'PY'
import json, sys
bin, version, dir, *env = sys.argv[1:]
env = dict(e.split("=", 1) for e in env)
print(json.dumps({
    "name": "better-ccflare", "version": version, "keys_stored": "", "listen": "127.0.0.1:18104",
    "token": "ccflare-open-access", "log": f"{dir}/ccflare.log",
    "start": {"argv": [bin, "--serve", "--port", "18104"], "cwd": dir, "env": env},
    "reset": [{"argv": [bin, "--force-reset-rate-limit", n], "cwd": dir, "env": env}
              for n in ("primary", "fallback")],
}))
PY
)"
    else
        echo "better-ccflare: its accounts could not be added (see its setup log)" >>"$cache/skipped"
    fi
fi

python3 - "$peers_json" "$standin" >"$work/spec.json" <<'PY'
import json, sys
print(json.dumps({"standin_port": int(sys.argv[2]), "starts": 7, "rounds": 3, "warmup": 100,
                  "c1_requests": 300, "per_connection": 10, "streams": 100,
                  "peers": json.load(open(sys.argv[1]))}))
PY
"$PWD/bench/proxy-bench/target/release/proxy-bench" peers --spec "$work/spec.json" --pids "$pids" \
    >"$work/report.json"
# The raw figures of the last run, for a closer look.
cp "$work/report.json" "$cache/last-report.json"

# Where each proxy keeps the keys, read from its files after the run: which of them hold the
# primary's key in plain text (and whether any holds the prompts).
facts="$work/facts.json"
python3 - "$work" "$key_primary" "$service" >"$facts" <<'PY'
import json, os, subprocess, sys
work, key, service = sys.argv[1:]
def holding(root, needle):
    found = []
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            try:
                if needle.encode() in open(p, "rb").read():
                    found.append(os.path.relpath(p, root))
            except OSError:
                pass
    return sorted(found)
names = {"keyswitch": "ks", "LiteLLM proxy": "litellm", "claude-code-router": "ccr", "better-ccflare": "ccflare"}
out = {}
for name, d in names.items():
    root = os.path.join(work, d)
    if not os.path.isdir(root):
        continue
    files = [f for f in holding(root, key) if not f.endswith(".log")]
    prompts = [f for f in holding(root, "[bench:none] The quick brown fox") if not f.endswith(".log")]
    if files:
        fact = "plain text: " + ", ".join(files)
    else:
        look = subprocess.run(["secret-tool", "lookup", "service", service, "username", "primary"],
                              capture_output=True, text=True).stdout
        fact = "OS keychain (Secret Service); in no file" if look == key else "not found"
    if prompts:
        fact += "; request bodies kept in " + ", ".join(prompts)
    out[name] = fact
print(json.dumps(out))
PY

python3 - "$work/report.json" "$facts" "$cache/skipped" <<'PY'
import datetime, json, platform, subprocess, sys
r = json.load(open(sys.argv[1])); facts = json.load(open(sys.argv[2]))
skipped = [l.strip() for l in open(sys.argv[3]) if l.strip()]
skipped += [f"{s['name']}: {s['why']}" for s in r["skipped"]]
med = lambda xs: sorted(xs)[len(xs) // 2] if xs else None
direct = r["direct"]["rounds"]
def added(p, kind, q):
    vals = [pr[kind][q] - dr[kind][q] for pr, dr in zip(p["rounds"], direct)
            if pr[kind].get(q) is not None]
    return med(vals)
rows = []  # (figure, unit, lower is better, value per peer)
def row(figure, unit, fn, better_low=True):
    rows.append((figure, unit, better_low, [fn(p) for p in r["peers"]]))
live = [p for p in r["peers"] if "rounds" in p]
for kind, label in [("c1", "concurrency 1"), ("c32", "concurrency 32")]:
    for q in ("p50", "p99"):
        row(f"added latency {q}, {label}", "ms", lambda p, k=kind, q=q: added(p, k, q) if "rounds" in p else None)
row("added time to first SSE event, p50", "ms", lambda p: added(p, "ttfb", "p50") if "rounds" in p else None)
def gap(p):
    g = [s["gap_ms"] for s in p["failover"] if s.get("gap_ms") is not None]
    return med(g)
row("failover: primary's 429 to fallback's request", "ms", gap)
row("RSS idle (after warm-up)", "MiB", lambda p: p.get("rss_idle_after_warmup_kib", 0) / 1024 or None)
row("RSS after load", "MiB", lambda p: p.get("rss_idle_after_load_kib", 0) / 1024 or None)
def streams(p):
    s = p.get("streams_64", {})
    return s["rss_kib"] / 1024 if s.get("opened") == 64 else None
row("RSS with 64 streams open", "MiB", streams)
row("start-up until first 200", "ms", lambda p: med(p["ready_ms"]))
def fmt(v, unit):
    if v is None: return "—"
    if unit == "ms": return f"{v:.2f} ms" if abs(v) < 10 else f"{v:.0f} ms"
    return f"{v:.1f} {unit}"
names = [f"{p['name']} {p['version']}" for p in r["peers"]]
print(f"keyswitch's proxy and its peers, {r['body_bytes'] // 1000} KB requests, one run, interleaved; "
      "latency: medians of 3 rounds; (×N) = N times keyswitch's figure")
print()
print("| | " + " | ".join(f"**{n}**" if i == 0 else n for i, n in enumerate(names)) + " |")
print("|---" * (len(names) + 1) + "|")
for figure, unit, _, vals in rows:
    ks = vals[0]
    cells = []
    for i, v in enumerate(vals):
        cell = fmt(v, unit)
        if i and v is not None and ks not in (None, 0) and ks > 0:
            cell += f" (×{v / ks:.0f})" if v / ks >= 10 else f" (×{v / ks:.1f})"
        cells.append(cell)
    print(f"| {figure} | " + " | ".join(cells) + " |")
def client_saw(p):
    s = p["failover"]
    bad = [x for x in s if x.get("status") != 200]
    return f"no failure ({len(s)} of {len(s)} answered 200)" if s and not bad else \
        f"{len(bad)} of {len(s)} failed ({bad[0].get('status', bad[0].get('error'))})" if s else "—"
print("| failover: what the client saw | " + " | ".join(client_saw(p) for p in r["peers"]) + " |")
def spent(p):
    s = p["spent"]
    if not s: return "—"
    x = s[0]
    if "error" in x: return f"no answer: {x['error']} after {x['ms']:.0f} ms"
    ra = f"retry-after {x['retry_after']}" if x.get("retry_after") else "no retry-after"
    return f"{x['status']}, {ra}, {x['upstream_calls']} upstream calls, in {fmt(x['ms'], 'ms')}"
print("| every key spent: what the client gets | " + " | ".join(spent(p) for p in r["peers"]) + " |")
print("| where the keys are stored | " + " | ".join(facts.get(p["name"], "—") for p in r["peers"]) + " |")
for p in r["peers"]:
    errs = [f"{k} {e['failed']} failed ({e['last_error']})" for rd in p.get("rounds", []) for k, e in rd.items() if e.get("failed")]
    if p.get("failed"): print(f"\n{p['name']}: not measured past start-up: {p['failed']}")
    if errs: print(f"\n{p['name']}: requests not answered 200: {'; '.join(errs[:3])}")
    if p.get("streams_64", {}).get("error"): print(f"\n{p['name']}: 64 streams: it passed the first event of {p['streams_64']['opened']} on ({p['streams_64']['error']}), so no figure")
for s in skipped: print(f"\nskipped: {s}")
node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip() or "none"
print(f"\n{datetime.date.today()}, {platform.machine()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores; "
      f"Python {platform.python_version()}, Node {node}; `./scripts/bench-peers.sh`")
PY
