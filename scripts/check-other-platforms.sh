#!/usr/bin/env bash
# Proves the macOS and Windows builds (their keychain stores and process-tree code included)
# compile and are clippy-clean, from Linux, and the static musl build of the Linux release (its
# allocator and vendored libdbus, built with musl-gcc) too. Run by .ci/run; adds the Rust targets
# when missing.
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
# The Linux release's static build, when musl-gcc is there to build its C (.ci/run installs it).
if command -v musl-gcc >/dev/null 2>&1; then
    # Not fatal: a toolchain can hold the musl std without rustup's record of it, and then
    # `target add` refuses to overwrite it; clippy below says so if the std is really missing.
    grep -qx x86_64-unknown-linux-musl <<<"$installed" \
        || rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
    echo "== clippy x86_64-unknown-linux-musl"
    cargo clippy --quiet --target x86_64-unknown-linux-musl -- -D warnings
else
    echo "== clippy x86_64-unknown-linux-musl: skipped, musl-gcc is missing (apt-get install musl-tools)"
fi
# The unit tests too (the macOS-only ones included), once for macOS: both Apple targets build
# the same code. Windows cannot build the integration tests, which use Unix-only std APIs.
echo "== clippy aarch64-apple-darwin --all-targets"
cargo clippy --quiet --target aarch64-apple-darwin --all-targets -- -D warnings
