#!/usr/bin/env bash
# Proves the macOS and Windows builds (their keychain stores included) compile, from Linux.
# Needs the two targets: rustup target add x86_64-apple-darwin x86_64-pc-windows-gnu
set -euo pipefail
cd "$(dirname "$0")/.."
for target in x86_64-apple-darwin x86_64-pc-windows-gnu; do
    echo "== $target"
    cargo clippy --quiet --target "$target" -- -D warnings
done
