#!/usr/bin/env bash
# Installs keyswitch and wires it into Claude Code, in one command:
#   ./install.sh                  build, install to ~/.local/bin (PREFIX=/usr/local ./install.sh
#                                 for /usr/local/bin), run `keyswitch install`
#   ./install.sh --force          ... replacing an apiKeyHelper you already had
#   ./install.sh --max-retries 2  ... with fewer 429 retries before switching (see README)
#   ./install.sh --uninstall      undo: take keyswitch out of Claude Code, delete the binary
# Safe to run again. Your keys stay in the keychain either way.
set -euo pipefail
cd "$(dirname "$0")"

prefix=${PREFIX:-$HOME/.local}
bindir="$prefix/bin"
target="$bindir/keyswitch"

if [ "${1:-}" = "--uninstall" ]; then
    if [ -x "$target" ]; then
        "$target" uninstall
        rm -f "$target"
        echo "install.sh: removed $target"
    else
        echo "install.sh: no keyswitch at $target; nothing to remove" >&2
    fi
    exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "install.sh: cargo is missing: install Rust (https://rustup.rs), then run ./install.sh again" >&2
    exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
    echo "install.sh: a C compiler is missing (keyswitch builds libdbus from source): install gcc or clang, then run ./install.sh again" >&2
    exit 1
fi

echo "install.sh: building keyswitch (release)..."
cargo build --release --locked --quiet
mkdir -p "$bindir"
# Copy to a temporary name and rename, so a running keyswitch is never half-overwritten.
install -m 0755 target/release/keyswitch "$target.new"
mv -f "$target.new" "$target"
echo "install.sh: installed $target"

case ":$PATH:" in
    *":$bindir:"*) ;;
    *) echo "install.sh: note: $bindir is not on your PATH; add it in your shell profile: export PATH=\"$bindir:\$PATH\"" ;;
esac

"$target" install "$@"

if "$target" list --json 2>/dev/null | grep -q '"name"'; then
    echo "install.sh: done. Check everything with: keyswitch doctor"
else
    cat <<MSG
install.sh: done. Next, add your keys (primary first); the secret is read from a hidden prompt:
  $target add primary --endpoint https://your-proxy.example.com
  $target add fallback
Then start Claude Code as usual, and check the setup with: $target doctor
MSG
fi
