#!/usr/bin/env bash
# The project's test command (README, .ci/run): every test, against a real Secret Service in a
# private D-Bus session (see with-private-keyring.sh). Arguments go on to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/with-private-keyring.sh cargo test "$@"
