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
work=$(mktemp -d)
cleanup() {
    git worktree remove --force "$work/tree" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== building $rev ($(git rev-parse --short "$rev")) and this checkout" >&2
git worktree add --quiet --detach "$work/tree" "$rev"
(cd "$work/tree" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release --quiet)
baseline="$work/target/release/keyswitch"
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
