#!/usr/bin/env bash
# The project's test command (README, .ci/run). Runs every test:
# - against a real Secret Service, in a private D-Bus session (see with-private-keyring.sh);
# - with the real Claude Code CLI, pinned below, installed from npm into .cache/claude.
# Arguments go on to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

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

exec scripts/with-private-keyring.sh cargo test "$@"
