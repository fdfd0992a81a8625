#!/usr/bin/env bash
# Compares this checkout's speed and memory with another revision's, side by side in one run:
#   scripts/bench-against.sh [REV]      (REV defaults to HEAD~1)
# Builds REV's release binary in a throwaway worktree, then runs scripts/bench.sh with REV's
# binary timed in the same hyperfine run, and scripts/bench-proxy.sh for each build in turn,
# twice (REV, this, REV, this), so a drift of the machine during the run shows as such. Every
# figure bench-proxy.sh prints is already a ratio or a difference against a direct connection
# measured in its own run. Informational: prints, never fails on a figure.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD~1}
commit=$(git rev-parse --short "$rev")
# The baseline's build is kept in .cache (gitignored), so a second run against the same
# revision measures at once.
cache="$PWD/.cache/bench-against/$commit"
tree=$(mktemp -d)
cleanup() {
    git worktree remove --force "$tree" >/dev/null 2>&1 || true
    rm -rf "$tree"
}
trap cleanup EXIT

baseline="$cache/target/release/keyswitch"
if [ ! -x "$baseline" ]; then
    echo "== building $rev ($commit)" >&2
    rmdir "$tree"
    git worktree add --quiet --detach "$tree" "$rev"
    mkdir -p "$cache"
    (cd "$tree" && CARGO_TARGET_DIR="$cache/target" cargo build --release --quiet)
fi
echo "== building this checkout" >&2
cargo build --release --quiet
current="$PWD/target/release/keyswitch"

echo "== get and status (scripts/bench.sh), baseline = $rev"
KEYSWITCH_BASELINE_BIN="$baseline" scripts/bench.sh || true
for round in 1 2; do
    for which in baseline current; do
        bin=$baseline
        [ "$which" = current ] && bin=$current
        echo "== proxy (scripts/bench-proxy.sh), $which, round $round"
        KEYSWITCH_BIN="$bin" scripts/bench-proxy.sh || true
    done
done
