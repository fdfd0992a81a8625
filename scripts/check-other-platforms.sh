#!/usr/bin/env bash
# Proves the macOS and Windows builds (their keychain stores and process-tree code included)
# compile and are clippy-clean, from Linux. Run by .ci/run; adds the Rust targets when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-gnu)
installed=$(rustup target list --installed)
for target in "${targets[@]}"; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target" >/dev/null 2>&1
done
for target in "${targets[@]}"; do
    echo "== clippy $target"
    cargo clippy --quiet --target "$target" -- -D warnings
done
# The unit tests too (the macOS-only ones included), once for macOS: both Apple targets build
# the same code. Windows cannot build the integration tests, which use Unix-only std APIs.
echo "== clippy aarch64-apple-darwin --all-targets"
cargo clippy --quiet --target aarch64-apple-darwin --all-targets -- -D warnings
