#!/usr/bin/env bash
# The project's test command (README, .ci/run). Runs every test:
# - against a real Secret Service, in a private D-Bus session (see with-private-keyring.sh);
# - with the real Claude Code CLI, pinned below, installed from npm into .cache/claude.
# Arguments go on to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The system tools the tests need; installed here when missing (with apt-get, as root or via sudo)
# so that this one command works on a fresh Debian or Ubuntu machine.
need=()
command -v dbus-run-session >/dev/null 2>&1 || need+=(dbus dbus-daemon)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || need+=(libsecret-tools)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# systemd-socket-activate and systemd-analyze: the socket-activation and unit-file tests.
command -v systemd-socket-activate >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: missing ${need[*]}: install them with your package manager" >&2
        exit 1
    fi
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "test.sh: installing ${need[*]} (apt-get)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

CLAUDE_CODE_VERSION=2.1.328
claude_bin=.cache/claude/node_modules/.bin/claude
if ! "$claude_bin" --version 2>/dev/null | grep -q "^$CLAUDE_CODE_VERSION "; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "test.sh: the end-to-end test needs Claude Code $CLAUDE_CODE_VERSION from npm, and npm is missing: install Node.js and npm" >&2
        exit 1
    fi
    echo "test.sh: installing Claude Code $CLAUDE_CODE_VERSION into .cache/claude" >&2
    npm install --prefix .cache/claude --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >&2
    "$claude_bin" --version >/dev/null
fi
export KEYSWITCH_CLAUDE_BIN="$PWD/$claude_bin"

# A real LiteLLM gateway for tests/gateway.rs, on loopback only: pinned in
# scripts/install-litellm.sh, installed into .cache/litellm-venv (python3-venv via apt-get when
# missing).
KEYSWITCH_LITELLM_BIN=$(scripts/install-litellm.sh)
export KEYSWITCH_LITELLM_BIN

# The Windows build under Wine against the real Credential Manager (scripts/test-windows.sh):
# the keychain and process-tree code differ per OS, and Linux tests cannot reach Windows'.
# Skipped for a filtered run (arguments given) or with KEYSWITCH_SKIP_WINDOWS=1.
if [ $# -eq 0 ] && [ "${KEYSWITCH_SKIP_WINDOWS:-}" != 1 ]; then
    scripts/test-windows.sh
fi

# Plain `cargo test`: it builds the test seams in (the `failpoints` feature, see Cargo.toml).
exec scripts/with-private-keyring.sh cargo test "$@"
